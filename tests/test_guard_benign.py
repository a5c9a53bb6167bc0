"""Threat defense must not get in the way of ordinary work: a busy benign team
of 10 accounts chats for a while and every message is delivered, nobody is
quarantined and no security event is recorded (issue "Threat defense").

The server runs with the shipped ``[guard]`` defaults (see
crates/rampart-guard/src/config.rs). The traffic is chosen to stay on the
benign side of each documented threshold while being as close to real team
chat as possible:

* greetings to several people ("Good morning!"): text-only messages never
  count for ``blast``, and fewer than ``min_text_chars`` = 40 characters of
  content never count for ``epidemic``;
* the same intranet link ``https://localhost/wiki/...`` (the server's domain,
  always trusted) to all 9 colleagues, and forwarded on by two of them:
  trusted links are left out of the behavioural rules, including the text of
  a message that carries one;
* the same external link to 2-3 colleagues (``blast`` needs 5 recipients),
  one of them as answers to two colleagues' questions (``auto_reply`` needs
  3 answered accounts) and forwarded once (``epidemic`` needs 3 accounts in
  the chain: origin + 1 relay is 2);
* long messages, code blocks (including ``curl ... | sh`` from a domain, not
  an IP), emoji, German, French, Spanish, Russian, Japanese, Chinese, Arabic,
  and quick back-and-forth replies ("ok", "👍", within a second).

Every message is asserted delivered exactly once to its recipient with no
error to any sender; then ``rampart quarantine list`` and ``rampart events
list --json`` must be empty.
"""

from __future__ import annotations

import asyncio
import collections

from rampart_harness import DOMAIN, events_list, quarantine_list, stanza_error_text

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
A, B, C, D, E, F, G, H, I, J = range(10)

INTRANET = f"https://{DOMAIN}/wiki/x"
EXTERNAL = "https://github.com/tokio-rs/tokio/pull/6789"
DOCS = "https://docs.rs/serde/latest/serde/de/trait.Deserialize.html"

ANNOUNCEMENT = (f"Reminder: the quarterly security training is mandatory for everyone, "
                f"all the details are on {INTRANET} — please finish it by Friday!")

LONG = {
    A: ("I went through the incident report from last night. The root cause was the "
        "connection pool running dry after the database failover; the retry loop kept "
        "every request waiting for thirty seconds instead of failing fast. I'd like to "
        "cap the retries at three and add a circuit breaker before we ship 2.4."),
    C: ("Zusammenfassung vom Kundentermin: Die Migration soll im März beginnen, der Kunde "
        "wünscht sich wöchentliche Statusberichte und einen festen Ansprechpartner. "
        "Offene Punkte sind das Budget für die Schulungen und die Datenübernahme."),
    E: ("Petit rappel : la démo client est jeudi à 14h. Pouvez-vous vérifier que "
        "l'environnement de préproduction est à jour et que les comptes de test "
        "fonctionnent ? Merci d'avance à toute l'équipe 🙏"),
    G: ("Коллеги, я обновила план релиза: заморозка кода в среду, регрессионное "
        "тестирование в четверг и пятницу, выкладка в понедельник утром. Если есть "
        "возражения, напишите до конца дня."),
    I: ("来週の金曜日に新しいオフィスへの引っ越しがあります。各自、机の上の私物を段ボール箱に"
        "まとめておいてください。ネットワーク機器は情報システム部が担当します。"),
    H: ("El informe trimestral ya está listo: las ventas crecieron un doce por ciento y "
        "los costes de infraestructura bajaron gracias a la consolidación de servidores. "
        "Lo presentaré el lunes en la reunión general."),
    J: ("我已经把季度预算表更新好了，请大家在周三之前检查各自部门的数据，如果有问题直接在"
        "表格里留言。谢谢大家的配合！"),
    F: ("مرحبا بالجميع، تم تأجيل اجتماع المراجعة الأسبوعي إلى يوم الخميس في الساعة العاشرة "
        "صباحا بسبب سفر المدير. يرجى تحديث تقاريركم قبل الموعد الجديد."),
}

CODE = {
    B: ("can you check this before I merge?\n```rust\nfn retry<F, T>(mut f: F, n: u32) -> "
        "Option<T>\nwhere\n    F: FnMut() -> Option<T>,\n{\n    for _ in 0..n {\n        "
        "if let Some(v) = f() {\n            return Some(v);\n        }\n    }\n    None\n}\n```"),
    D: ("to set up the toolchain on the new laptops:\n```sh\ncurl --proto '=https' --tlsv1.2 "
        "-sSf https://sh.rustup.rs | sh\nrustup component add clippy rustfmt\n"
        "cargo install cargo-nextest --locked\n```\nthen `cargo nextest run` in the repo"),
    F: ("quick pandas trick for the report:\n```python\nimport pandas as pd\n"
        "df = pd.read_csv('sales.csv', parse_dates=['date'])\n"
        "print(df.groupby(df.date.dt.to_period('M'))['amount'].sum())\n```"),
    H: ("the SQL for the dashboard:\n```sql\nSELECT team, count(*) AS tickets, "
        "avg(resolved_at - created_at) AS mttr\nFROM tickets\nWHERE created_at > now() - "
        "interval '30 days'\nGROUP BY team ORDER BY mttr;\n```"),
}


async def test_busy_benign_team_is_never_blocked(server, new_user, clients):
    users = [new_user(n) for n in NAMES]
    cs = [await clients(u, "desk") for u in users]
    for c in cs:
        await c.go_online()
    expected: dict[int, collections.Counter] = {i: collections.Counter() for i in range(10)}

    def send(s: int, r: int, body: str) -> None:
        cs[s].send_msg(users[r].jid, body)
        expected[r][(users[s].jid, body)] += 1

    async def wait_got(r: int, s: int, body: str) -> None:
        await cs[r].wait_message(
            lambda m: m["body"] == body and m["from"].bare == users[s].jid,
            timeout=10, what=f"{NAMES[s]} -> {NAMES[r]}: {body[:60]!r}")

    # Morning greetings to several people.
    greetings = ["Good morning!", "morning all ☕", "Hi team 👋", "Guten Morgen!",
                 "Bonjour à tous", "Доброе утро", "おはようございます", "Buenos días 😊",
                 "早上好", "صباح الخير"]
    for s in range(10):
        for r in range(10):
            if r != s and (r - s) % 10 in (1, 2, 3, 5):
                send(s, r, greetings[s])
        await asyncio.sleep(0.02)

    # The intranet announcement to all 9 colleagues, forwarded on by two of them.
    for r in range(10):
        if r != A:
            send(A, r, ANNOUNCEMENT)
    await wait_got(B, A, ANNOUNCEMENT)
    await wait_got(C, A, ANNOUNCEMENT)
    for r in (F, G):
        send(B, r, ANNOUNCEMENT)
    send(C, H, "fwd: " + ANNOUNCEMENT)
    for r in range(10):
        if r != J:
            send(J, r, f"updated the on-call page {INTRANET}#rota")

    # The same external link to three colleagues: unprompted to one, as answers
    # to the questions of two; one of them forwards it once.
    send(D, E, f"this fixes our hang: {EXTERNAL}")
    for asker, q in ((F, "dave, which PR fixed the runtime hang?"),
                     (G, "do you have the link to the tokio fix?")):
        send(asker, D, q)
        await wait_got(D, asker, q)
        send(D, asker, f"here: {EXTERNAL}")
    await wait_got(E, D, f"this fixes our hang: {EXTERNAL}")
    send(E, I, f"fyi {EXTERNAL} — dave says it fixes the hang")
    send(H, C, f"docs for the trait: {DOCS}")
    send(H, J, f"this one {DOCS}")

    # Long messages, code, languages.
    for s, text in LONG.items():
        for r in ((s + 1) % 10, (s + 4) % 10):
            send(s, r, text)
        await asyncio.sleep(0.02)
    for s, text in CODE.items():
        send(s, (s + 2) % 10, text)

    # Quick back-and-forth.
    chats = [
        (A, B, ["lunch?", "sure, 12:30?", "ok", "👍", "meet at the lobby", "see you"]),
        (C, D, ["is the build green?", "yes since 10", "great, merging", "🚀",
                "thanks!", "np"]),
        (E, F, ["can you review #482?", "on it", "left two comments", "fixed",
                "approved ✅", "merci"]),
        (G, H, ["Hast du kurz Zeit?", "ja klar", "Anruf in 2 min?", "passt",
                "danke dir", "gerne"]),
        (I, J, ["deploy now?", "wait for QA", "QA says go", "go 🎉", "done", "nice"]),
    ]

    async def back_and_forth(x: int, y: int, lines: list[str]) -> None:
        for k, line in enumerate(lines):
            s, r = (x, y) if k % 2 == 0 else (y, x)
            send(s, r, line)
            await wait_got(r, s, line)

    await asyncio.gather(*(back_and_forth(*c) for c in chats))

    # Every message delivered exactly once; no errors anywhere.
    missing = []
    for r in range(10):
        want = expected[r]
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            got = collections.Counter((m["from"].bare, m["body"]) for m in cs[r].messages.items
                                      if m["type"] != "error" and m["body"])
            if all(got[k] >= n for k, n in want.items()):
                break
            if asyncio.get_running_loop().time() > deadline:
                missing += [f"{NAMES[r]} lacks {k[0]}: {k[1][:60]!r}"
                            for k, n in want.items() if got[k] < n]
                break
            await asyncio.sleep(0.1)
    errors = [f"{NAMES[i]} got error: {stanza_error_text(m)!r}"
              for i, c in enumerate(cs) for m in c.messages.items if m["type"] == "error"]
    assert not errors and not missing, "\n".join(errors + missing)
    await asyncio.sleep(0.5)
    dup = []
    for r in range(10):
        got = collections.Counter((m["from"].bare, m["body"]) for m in cs[r].messages.items
                                  if m["type"] != "error" and m["body"])
        dup += [f"{NAMES[r]} got {n}x {k[1][:40]!r}" for k, n in got.items()
                if n != expected[r][k]]
    assert not dup, dup
    total = sum(sum(c.values()) for c in expected.values())
    assert total >= 100, total  # a busy morning, not a toy

    assert quarantine_list(server) == {}, quarantine_list(server)
    evs = events_list(server)
    assert evs == [], evs
