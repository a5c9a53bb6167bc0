// Script droppers and download cradles pasted into chat ("run this to fix your VPN").
// Each rule needs several specific tokens together, so ordinary technical chat (a single
// PowerShell command, a code review snippet) does not match.

rule PowerShell_Download_Cradle
{
    meta:
        description = "PowerShell downloads and executes code in one line"
    strings:
        $dl1 = "DownloadString" nocase
        $dl2 = "DownloadFile" nocase
        $dl3 = "Invoke-WebRequest" nocase
        $dl4 = "iwr " nocase
        $dl5 = "Net.WebClient" nocase
        $dl6 = "Start-BitsTransfer" nocase
        $ex1 = "IEX" fullword nocase
        $ex2 = "Invoke-Expression" nocase
        $ex3 = "Start-Process" nocase
        $ex4 = "| iex" nocase
    condition:
        any of ($dl*) and any of ($ex*)
}

rule PowerShell_Encoded_Command
{
    meta:
        description = "Hidden PowerShell with a base64-encoded command"
    strings:
        $ps = "powershell" nocase
        $enc = /\s-(e|en|enc|enco|encod|encode|encoded|encodedcommand|ec)\s+[A-Za-z0-9+\/=]{40,}/ nocase
        $hidden = /-w(indowstyle)?\s+hidden/ nocase
        $nop = "-nop" nocase
    condition:
        $ps and $enc and ($hidden or $nop)
}

rule Windows_LOLBin_Dropper
{
    meta:
        description = "Living-off-the-land binaries fetching remote code"
    strings:
        $a1 = /certutil(\.exe)?\s+[^\n]{0,40}-urlcache\s+[^\n]{0,20}-f\s+https?:\/\// nocase
        $a2 = /mshta(\.exe)?\s+(vbscript:|javascript:|https?:\/\/)/ nocase
        $a3 = /regsvr32(\.exe)?\s+[^\n]{0,40}\/i:https?:\/\/[^\n]{0,200}scrobj\.dll/ nocase
        $a4 = /bitsadmin(\.exe)?\s+\/transfer\s+[^\n]{0,200}https?:\/\// nocase
        $a5 = /rundll32(\.exe)?\s+javascript:/ nocase
    condition:
        any of them
}

rule Unix_Pipe_To_Shell_From_IP
{
    meta:
        description = "curl/wget of a script from a bare IP address piped into a shell"
    strings:
        $a = /(curl|wget)\s+[^\n|]{0,40}https?:\/\/\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}[^\n|]{0,200}\|\s*(sudo\s+)?(ba|z|da)?sh\b/ nocase
    condition:
        $a
}

rule VBScript_Dropper
{
    meta:
        description = "VBScript that downloads and runs a program"
    strings:
        $http = "MSXML2.XMLHTTP" nocase
        $http2 = "WinHttp.WinHttpRequest" nocase
        $stream = "ADODB.Stream" nocase
        $run1 = "WScript.Shell" nocase
        $run2 = ".Run" nocase
        $save = "SaveToFile" nocase
    condition:
        ($http or $http2) and $stream and $save and ($run1 or $run2)
}
