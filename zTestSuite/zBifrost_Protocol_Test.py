"""The bridge's pure core, without sockets: frame parsing and the rate bucket."""

from __future__ import annotations

import unittest

from zCLI.bridge.limits import TokenBucket
from zCLI.bridge.protocol import (
    AuthRequest,
    DispatchRequest,
    EventRequest,
    InputResponse,
    LoginRequest,
    ProtocolError,
    dispatch_key,
    error_reply,
    parse,
    request_object,
    result_reply,
)


class TestParse(unittest.TestCase):
    def test_dispatch_key_accepts_what_parse_accepts(self) -> None:
        """dispatch_key gives the zKey exactly when parse gives a DispatchRequest; for
        the rest, parse's answer (an error code or another event) is the reply."""
        long_id = "x" * 129
        frames = [  # frame, dispatch_key's answer, parse's (a DispatchRequest's zKey or code)
            ('{"event": "dispatch", "zKey": "^Ping", "_requestId": 5}', "^Ping", "^Ping"),
            ('{"event": "dispatch", "zKey": "^Ping"}', "^Ping", "^Ping"),
            ('{"event": "dispatch", "zKey": "Echo", "_requestId": "a"}', "Echo", "Echo"),
            ('{"event": "dispatch", "zKey": "Echo", "_requestId": null}', "Echo", "Echo"),
            ('{"event": "dispatch", "zKey": "Echo", "_requestId": 1.5}', "Echo", "Echo"),
            ('{"event": "dispatch", "zKey": "a", "_requestId": 9007199254740992}', None,
             "invalid_message"),
            ('{"event": "dispatch", "zKey": "a", "_requestId": true}', None, "invalid_message"),
            ('{"event": "dispatch", "zKey": "a", "_requestId": [1]}', None, "invalid_message"),
            (f'{{"event": "dispatch", "zKey": "a", "_requestId": "{long_id}"}}', None,
             "invalid_message"),
            ('{"event": "dispatch", "zKey": 5}', None, "invalid_message"),
            ('{"event": "dispatch"}', None, "missing_field"),
            (f'{{"event": "dispatch", "zKey": "{"k" * 257}"}}', None, "invalid_message"),
            ('{"event": "ping", "zKey": "^Ping"}', None, "ping"),
            ('{"zKey": "^Ping"}', None, "missing_field"),
        ]  # fmt: skip
        for frame, key, parsed in frames:
            with self.subTest(frame=frame[:80]):
                self.assertEqual(dispatch_key(request_object(frame)), key)
                try:
                    request = parse(frame)
                except ProtocolError as exc:
                    self.assertEqual(exc.code, parsed)
                    continue
                if isinstance(request, DispatchRequest):
                    self.assertEqual(request.zKey, parsed)
                else:
                    self.assertEqual(request.event, parsed)

    def test_requests(self) -> None:
        """Each event parses into its dataclass, keeping the request id and body."""
        frame = '{"event": "dispatch", "zKey": "^Ping", "_requestId": 5}'
        self.assertEqual(
            parse(frame),
            DispatchRequest(
                "dispatch",
                5,
                True,
                {"event": "dispatch", "zKey": "^Ping", "_requestId": 5},
                zKey="^Ping",
            ),
        )
        self.assertEqual(
            parse('{"event": "input_response", "requestId": "input-1"}'),
            InputResponse(
                "input_response",
                None,
                False,
                {"event": "input_response", "requestId": "input-1"},
                input_id="input-1",
                value=None,
            ),
        )
        self.assertIsInstance(parse('{"event": "auth", "token": "t"}'), AuthRequest)
        self.assertIsInstance(
            parse('{"event": "login", "username": "a", "password": "b"}'), LoginRequest
        )
        self.assertEqual(
            parse('{"event": "chat.send", "_requestId": null}'),
            EventRequest("chat.send", None, True, {"event": "chat.send", "_requestId": None}),
        )

    def test_refusals(self) -> None:
        """Bad frames raise ProtocolError with the code the sender gets."""
        table = [
            (b"{}", "invalid_message", "Binary frames are not accepted; send JSON text."),
            ("nope", "invalid_json", "The message is not valid JSON."),
            ("3", "invalid_message", "The message must be a JSON object."),
            ("{}", "missing_field", "The message needs an 'event' field."),
            ('{"event": ["x"]}', "invalid_message", "The 'event' field must be a string."),
            (
                '{"event": "login", "username": "a"}',
                "missing_field",
                "The login event needs a 'password' field.",
            ),
            (
                '{"event": "input_response", "requestId": "i", "value": 3}',
                "invalid_message",
                "The 'value' field of input_response must be a string.",
            ),
        ]
        for frame, code, message in table:
            with self.subTest(frame=frame), self.assertRaises(ProtocolError) as caught:
                parse(frame)
            self.assertEqual((caught.exception.code, caught.exception.message), (code, message))

    def test_reply_shapes(self) -> None:
        """Results and errors have the documented keys."""
        self.assertEqual(
            result_reply(0, {"message": "Pong!"}), {"result": {"message": "Pong!"}, "_requestId": 0}
        )
        self.assertEqual(
            error_reply("a", "unknown_key", "No."),
            {"error": "No.", "code": "unknown_key", "_requestId": "a"},
        )


class TestTokenBucket(unittest.TestCase):
    def test_burst_then_refill(self) -> None:
        """A full bucket allows the burst, then refills at the rate."""
        bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(4)], [True, True, True, False])
        self.assertFalse(bucket.take(0.4))  # 0.8 of a token
        self.assertTrue(bucket.take(0.5))  # 1.0 token
        self.assertFalse(bucket.take(0.5))

    def test_never_above_burst(self) -> None:
        """A long idle spell fills the bucket only to the burst."""
        bucket = TokenBucket(rate=100.0, burst=2, now=0.0)
        self.assertEqual([bucket.take(1000.0) for _ in range(3)], [True, True, False])
