"""Frames quoted in ../shared/spec/drachtio-protocol.md, copied verbatim.

Each constant is the spec's text with its ``\\r\\n`` notation turned into CRLF (see
:func:`wire_text`); ``…`` stays as written (the spec abbreviates UUIDs and SIP text
with it, and a ``…`` is as good a token as any). Where the spec shows a placeholder
(``<id>``), the test substitutes a value.
"""

from __future__ import annotations


def wire_text(spec: str) -> bytes:
    """The payload bytes of a frame as the spec writes it (``\\r\\n`` is CRLF)."""
    return spec.replace("\\r\\n", "\r\n").encode()


# §1.2 / §9.3
AUTH_FRAME = r"24#1234|authenticate|cymru|"

# §3.2 success
AUTH_OK = (r"bf72e034-a662-4a9b-b159-888868821309|response|fc29c6d0-d163-4b12-ba5a-72ecc67b1c61"
           r"|OK|tcp/127.0.0.1:5080,udp/127.0.0.1:5080|v0.9.10-1-g9c2dd4cb6a"
           r"|tcp/127.0.0.1:5080,udp/127.0.0.1:5080")
# §3.2 failure, §4.6 (<id> → 1234)
AUTH_NO = r"…|response|<id>|NO|incorrect secret"
# §3.3
ROUTE_OK = r"…|response|<id>|OK"
# §3.5
PING = r"<id>|ping"
PONG = r"<sid>|response|<id>|OK|pong"

# §4.2 new OPTIONS (line breaks after \r\n were added by the spec for readability)
NEW_OPTIONS = (
    r"70443442-d74b-4133-9591-ad4800ea5ff4|sip|network|262|udp|127.0.0.1|16000|08:42:15.477168"
    r"|4626d75f-8785-44b3-921c-9f9854a2f889||127.0.0.1|5080|\r\n"
    r"OPTIONS sip:app@127.0.0.1:5080 SIP/2.0\r\n"
    r"Via: SIP/2.0/UDP 127.0.0.1:16000;branch=z9hG4bK265f9cce72ed465d;rport=16000\r\n"
    r"Max-Forwards: 70\r\n"
    r"From: <sip:alice@127.0.0.1:16000>;tag=a1\r\n"
    r"To: <sip:app@127.0.0.1:5080>\r\n"
    r"Call-ID: opt-a0dffd4c\r\n"
    r"CSeq: 1 OPTIONS\r\n"
    r"Content-Length: 0\r\n"
    r"\r\n"
)
IN_DIALOG_BYE = (r"16ba2547-…|sip|network|281|udp|127.0.0.1|16000|08:42:15.481787"
                 r"|ae41d441-b663-4d96-8b62-e6dc979627cd|inv-2d443ffa;from-tag=atag1|"
                 r"\r\nBYE sip:127.0.0.1:5080 SIP/2.0\r\n…")
ACK = (r"a4b8bcc9-…|sip|network|281||127.0.0.1|16000|08:42:15.480155"
       r"|826bfc90-8929-427e-aa6f-3abe67723c42|inv-2d443ffa;from-tag=atag1|"
       r"\r\nACK sip:127.0.0.1:5080 SIP/2.0\r\n…")
QUICK_CANCEL = (r"068e0d55-…|sip|network|274|udp|127.0.0.1|16000|08:42:15.487372"
                r"|2dc55af5-cd08-44a0-832e-770d44bd0bf3||\r\nCANCEL sip:1000@127.0.0.1:5080 SIP/2.0"
                r"\r\n…")
INVITE_407 = (r"72e24e2c-…|sip|network|390|udp|127.0.0.1|16002|08:42:15.483245"
              r"|fda119a5-992e-4d50-ae31-b17db7975b50"
              r"|1f70f337-6418-1240-75bb-02365959d547;from-tag=S1NH98t2QHrmN|"
              r"\r\nSIP/2.0 407 Proxy Authentication Required\r\n…")
UNSOLICITED_BYE = (r"185dbe01-…|sip|application|319|udp|127.0.0.1|5080|08:44:37.851386"
                   r"|unsolicited|noack-37b3e595;from-tag=atag3|\r\nBYE sip:alice@127.0.0.1:16020"
                   r' SIP/2.0\r\n…\r\nReason: SIP;cause=200;text="ACK timeout"\r\n'
                   r"Content-Length: 0\r\n\r\n")

# §4.3.1
RESPONSE_180 = r"<id>|sip|<txn>|\r\nSIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n"
SENT_200 = (r"88b1fd9e-…|response|a8042c04-…|OK|application|442|udp|127.0.0.1|16000"
            r"|08:42:15.479703|826bfc90-8929-427e-aa6f-3abe67723c42|inv-2d443ffa;from-tag=atag1"
            r"||Msg sent:|\r\nSIP/2.0 200 OK\r\nVia: …\r\nTo: <sip:1000@127.0.0.1:5080>"
            r";tag=rrvr7DaZt811S\r\n…Contact: <sip:127.0.0.1:5080>\r\n…")
# §4.3.2
NEW_INVITE = (r'<id>|sip||\r\nINVITE sip:bob@127.0.0.1:16002 SIP/2.0\r\nFrom: "PBX" '
              r"<sip:pbx@localhost>\r\nTo: <sip:bob@127.0.0.1:16002>\r\nX-App: probe\r\n"
              r"Content-Type: application/sdp\r\nContent-Length: 122\r\n\r\nv=0\r\n…")
SENT_INVITE = (
    r"c7d339c2-…|response|6178f353-…|OK|application|504|udp|127.0.0.1|5080|08:42:15.482909"
    r"|fda119a5-992e-4d50-ae31-b17db7975b50|Msg sent:|\r\nINVITE sip:bob@127.0.0.1:16002 SIP/2.0"
    r"\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bKrcXteX9Dp2vrF\r\nMax-Forwards: 70"
    r'\r\nFrom: "PBX" <sip:pbx@127.0.0.1:5080>;tag=S1NH98t2QHrmN\r\nTo: '
    r"<sip:bob@127.0.0.1:16002>\r\nCall-ID: 1f70f337-6418-1240-75bb-02365959d547\r\nCSeq: "
    r"123287475 INVITE\r\nContact: <sip:127.0.0.1:5080>\r\nContent-Type: application/sdp\r\n"
    r"Content-Length: 122\r\nX-App: probe\r\n\r\nv=0\r\n…"
)
# §4.3.3
IN_DIALOG_BYE_REQUEST = (r"<id>|sip||<dialogId>\r\nBYE sip:placeholder SIP/2.0\r\n"
                         r"X-Reason: done\r\nContent-Length: 0\r\n\r\n")
ACK_REQUEST = r"<id>|sip||<dialogId>\r\nACK sip:placeholder SIP/2.0\r\nContent-Length: 0\r\n\r\n"
# §4.3.4
CANCEL_REQUEST = (r"<id>|sip|<INVITE transaction id>|\r\nCANCEL sip:carol@127.0.0.1:16002 "
                  r'SIP/2.0\r\nReason: SIP ;cause=487 ;text="caller hung up"\r\n'
                  r"Content-Length: 0\r\n\r\n")
# §4.4
PROXY = (r"<id>|proxy|<txn>|<remainInDialog>|<fullResponse>|<followRedirects>|<forking>"
         r"|<provisionalTimeout>|<finalTimeout>|<dest1>|<dest2>\r\n<SIP request text>")
PROXY_CONTINUE = (r"88773644-…|response|8db6d0b4-…|OK|network|558|udp|127.0.0.1|16012"
                  r"|08:43:05.841545|||continue\r\nSIP/2.0 200 OK\r\n…")
PROXY_DONE = r"d88eb8d7-…|response|8db6d0b4-…|OK|done"
# §4.5
CDR_START = r"3dc1e55f-…|cdr:start|application|08:42:15.479726|uas\r\nSIP/2.0 200 OK\r\n…"
CDR_STOP = r"0780b5ed-…|cdr:stop|network|08:42:15.483480|call-rejected\r\nSIP/2.0 407 …"
# §3.4, §3.3
ROUTE = r"<id>|route|<verb>"
REMOVE_ROUTE = r"<id>|remove_route|<verb>"

# §8 flows (frames whose meta and start line the spec quotes in full)
FLOW_INVITE = (r"…|sip|network|467|udp|127.0.0.1|16000|08:42:15.478553|826bfc90-…||127.0.0.1"
               r"|5080|\r\nINVITE …")
FLOW_SENT_180 = (r"…|response|<m1>|OK|application|261|udp|127.0.0.1|16000|…|826bfc90-…"
                 r"|inv-2d443ffa;from-tag=atag1||Msg sent:|\r\nSIP/2.0 180 Ringing …To: …"
                 r";tag=rrvr7DaZt811S")
FLOW_INFO = (r"<m3>|sip||inv-2d443ffa;from-tag=atag1\r\nINFO sip:placeholder SIP/2.0\r\n"
             r"Content-Type: application/dtmf-relay\r\nContent-Length: 22\r\n\r\n"
             r"Signal=5\r\nDuration=160")
FLOW_SENT_INFO = (r"…|response|<m3>|OK|application|347|udp|127.0.0.1|5080|…|712e4001-…"
                  r"|Msg sent:|\r\nINFO sip:alice@127.0.0.1:16000 SIP/2.0 …CSeq: 11 INFO…")
FLOW_SENT_BYE_200 = (r"…|response|<m4>|OK|application|253||127.0.0.1|16000|…|ae41d441-…|||"
                     r"Msg sent:|\r\nSIP/2.0 200 OK …")
FLOW_ACK_NOK = (r"…|response|<m6>|NOK|Server error: ACK for non-success final response is "
                r"automatically generated by server")
FLOW_CANCEL = (r"<m10>|sip|d65d8eff-…|\r\nCANCEL sip:carol@127.0.0.1:16002 SIP/2.0\r\n"
               r'Reason: SIP ;cause=487 ;text="caller hung up"\r\nContent-Length: 0\r\n\r\n')
