// EICAR anti-virus test file (https://www.eicar.org/download-anti-malware-testfile/).
// Matched anywhere in the scanned data, so it is caught in a chat message body as well as in
// a file. Rampart's tests rely on this rule: the EICAR string must always be caught.
rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-virus test string"
        severity = "test"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar
}

// The enterprise IM test marker used by Rampart's test suite and ClamAV fixtures.
rule Rampart_Test_Marker
{
    meta:
        description = "Rampart malware test marker"
    strings:
        $m = "ENTERPRISE-IM-MALWARE-TEST-MARKER-7f3a9c"
    condition:
        $m
}
