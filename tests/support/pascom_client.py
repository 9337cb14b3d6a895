"""A real XMPP client (slixmpp) driven by a test over stdin/stdout.

Usage: pascom_client.py JID PASSWORD HOST PORT

Logs in to the XMPP server at HOST:PORT as JID (a full JID: the resource is kept), sends
available presence, then:

* every line on stdin is sent to the server verbatim (raw XML, as a pascom client writes it);
* every <iq/> and <message/> received is printed as one JSON line {"stanza": "<…>"};
* {"event": "ready"} once the session started, {"event": "disconnected"} when it ends.
"""

import asyncio
import json
import sys
import threading

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        # A loopback test server without TLS: SCRAM needs no encryption to keep the password.
        super().__init__(
            jid, password, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}}
        )
        self.enable_direct_tls = False
        self.ready = threading.Event()
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("disconnected", lambda _: out({"event": "disconnected"}))
        self.add_event_handler("failed_auth", lambda _: out({"event": "failed_auth"}))
        for name in ("iq", "message"):
            self.register_handler(
                Callback("pascom " + name, MatchXPath("{jabber:client}%s" % name), self.got)
            )

    async def started(self, _):
        self.send_presence()
        self.ready.set()
        out({"event": "ready"})

    def got(self, stanza):
        out({"stanza": str(stanza)})


def main():
    jid, password, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = Client(jid, password)
    loop = asyncio.get_event_loop()

    def read_stdin():
        client.ready.wait()
        for line in sys.stdin:
            line = line.strip()
            if line:
                loop.call_soon_threadsafe(client.send_raw, line)
        loop.call_soon_threadsafe(client.disconnect)

    client.connect(host, port)
    threading.Thread(target=read_stdin, daemon=True).start()
    loop.run_until_complete(client.disconnected)


if __name__ == "__main__":
    main()
