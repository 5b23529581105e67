"""The Telegram backend against a loopback emulator of the Bot API."""

from __future__ import annotations

import pytest

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.telegram import TelegramBackend
from delivery.tests.providers._server import Reply
from delivery.tests.providers.fake_telegram import TelegramEmulator, telegram_error


@pytest.fixture
def telegram(serve):
    emulator = TelegramEmulator()
    server = serve(emulator)
    waits: list[float] = []

    def make(**options) -> TelegramBackend:
        return TelegramBackend(
            sleep=waits.append, **{"bot_token": emulator.token, "api_base": server.url, **options}
        )

    return emulator, server, make, waits


def message(chat: str, text: str = "<b>Sale</b> starts now", ref: str = "", **payload) -> OutboundMessage:
    return OutboundMessage(
        channel="telegram", to=chat, ref=ref or f"L{chat}", payload={"text": text, **payload}
    )


def test_it_sends_formatted_text_with_buttons_and_keeps_the_message_id(telegram):
    emulator, server, make, _ = telegram
    buttons = [
        [{"text": "Shop", "url": "https://acme.example/sale"}, {"text": "", "url": "https://x"}],
        [{"text": "Unsubscribe", "url": "https://acme.example/u/1"}],
    ]
    with make() as backend:
        results = backend.send_many(
            [message("1001", buttons=buttons), message("1002", "*bold*", parse_mode="MarkdownV2")]
        )

    assert [(r.ok, r.provider_id) for r in results] == [(True, "100"), (True, "101")]
    first, second = emulator.sent
    assert first == {
        "chat_id": "1001",
        "text": "<b>Sale</b> starts now",
        "parse_mode": "HTML",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Shop", "url": "https://acme.example/sale"}],
                [{"text": "Unsubscribe", "url": "https://acme.example/u/1"}],
            ]
        },
        "link_preview_options": {"is_disabled": True},
        "message_id": 100,
    }
    assert second["parse_mode"] == "MarkdownV2" and "reply_markup" not in second
    assert server.requests[0].path == f"/bot{emulator.token}/sendMessage"
    assert server.requests[0].client_port == server.requests[1].client_port


def test_it_waits_the_retry_after_of_a_429_and_sends_the_same_message_once_more(telegram):
    emulator, server, make, waits = telegram
    emulator.throttle(retry_after=3)
    with make() as backend:
        [result] = backend.send_many([message("1001")])

    assert result.ok
    assert waits == [3.0]
    assert [r.json()["chat_id"] for r in server.requests] == ["1001", "1001"]
    assert len(emulator.sent) == 1


def test_a_second_429_stops_the_batch_with_the_retry_after(telegram):
    emulator, server, make, waits = telegram
    emulator.throttle(retry_after=2, times=2)
    with make() as backend:
        results = backend.send_many([message("1001"), message("1002")])

    assert waits == [2.0]
    assert [(r.ok, r.permanent, r.retry_after) for r in results] == [(False, False, 2.0)] * 2
    assert results[0].error == "HTTP 429: Too Many Requests: retry after 2"
    assert results[1].error.startswith("not attempted")
    assert len(server.requests) == 2


def test_it_does_not_wait_longer_than_max_wait(telegram):
    emulator, _, make, waits = telegram
    emulator.throttle(retry_after=600)
    with make(max_wait=30) as backend:
        [result] = backend.send_many([message("1001")])

    assert waits == []
    assert not result.ok and not result.permanent and result.retry_after == 600


@pytest.mark.parametrize(
    ("state", "description"),
    [
        ("blocked", "Forbidden: bot was blocked by the user"),
        ("deactivated", "Forbidden: user is deactivated"),
    ],
)
def test_it_deactivates_a_chat_that_blocked_the_bot_or_was_deleted(telegram, state, description):
    emulator, _, make, _ = telegram
    getattr(emulator, state).add("1001")
    with make() as backend:
        gone, sent = backend.send_many([message("1001"), message("1002")])

    assert not gone.ok and gone.permanent and gone.deactivate
    assert gone.error == f"HTTP 403: {description}"
    assert sent.ok


def test_it_deactivates_a_chat_that_does_not_exist(telegram):
    _, _, make, _ = telegram
    with make() as backend:
        [result] = backend.send_many([message("999")])
    assert not result.ok and result.permanent and result.deactivate
    assert result.error == "HTTP 400: Bad Request: chat not found"


def test_other_bad_requests_are_permanent_with_telegrams_description(telegram):
    _, _, make, _ = telegram
    with make() as backend:
        [result] = backend.send_many([message("1001", "<blink>hi</blink>")])
    assert not result.ok and result.permanent and not result.deactivate
    assert result.error == 'HTTP 400: Bad Request: can\'t parse entities: Unsupported start tag "blink"'


def test_a_server_error_is_temporary(telegram):
    emulator, _, make, _ = telegram
    emulator.faults.fail_next(telegram_error(502, "Bad Gateway"))
    with make() as backend:
        failed, sent = backend.send_many([message("1001"), message("1002")])
    assert not failed.ok and not failed.permanent and failed.error == "HTTP 502: Bad Gateway"
    assert sent.ok


def test_a_refused_token_is_a_permanent_error_that_never_shows_the_token(telegram):
    _, _, make, _ = telegram
    with make(bot_token="999:revoked-secret-token") as backend, pytest.raises(DeliveryError) as caught:
        backend.send_many([message("1001")])
    assert caught.value.permanent and "Unauthorized" in caught.value.message
    assert "revoked-secret-token" not in caught.value.message


def test_the_token_is_blanked_out_of_errors_that_quote_the_url(telegram):
    emulator, _, make, _ = telegram
    emulator.faults.fail_next(Reply(500, f"proxy error fetching /bot{emulator.token}/sendMessage"))
    with make() as backend:
        [result] = backend.send_many([message("1001")])
    assert emulator.token not in result.error and "/bot***/sendMessage" in result.error


def test_its_check_calls_get_me(telegram):
    _, server, make, _ = telegram
    with make() as backend:
        assert backend.check() == "Telegram bot @acme_news_bot (Acme)"
    assert server.requests[-1].path.endswith("/getMe")
    with make(bot_token="1:wrong") as backend, pytest.raises(DeliveryError) as caught:
        backend.check()
    assert caught.value.permanent


def test_an_unreachable_bot_api_fails_the_batch_temporarily_without_the_token(closed_port_url):
    backend = TelegramBackend(bot_token="1:secret-abc", api_base=closed_port_url)
    with backend, pytest.raises(DeliveryError) as caught:
        backend.send_many([message("1001")])
    assert not caught.value.permanent and "secret-abc" not in caught.value.message
