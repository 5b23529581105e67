"""Reading inbound mail from a Maildir or an mbox file, and processing a whole mailbox."""

from __future__ import annotations

import logging
import mailbox
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from mailings.bounces.parse import parse_message
from mailings.bounces.report import InboundReport

logger = logging.getLogger("mailings.bounces")

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""A message file larger than this is not read whole: only its first MAX_MESSAGE_BYTES."""


@dataclass(slots=True)
class ProcessResult:
    """What process_mailbox did: messages seen, handled (handle returned), failed (handle raised:
    kept in the mailbox for the next run), deleted, and the handled ones by kind."""

    seen: int = 0
    handled: int = 0
    failed: int = 0
    deleted: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


def is_maildir(path: str | os.PathLike[str]) -> bool:
    """True when path is a directory with cur/ and new/ subdirectories."""
    base = Path(path)
    return (base / "cur").is_dir() and (base / "new").is_dir()


def iter_maildir(path: str | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """(key, raw bytes) for each message in the Maildir at path (new/ and cur/), in key order
    (Maildir keys start with the delivery time, so roughly oldest first).

    key is the Maildir unique name, usable with `mailbox.Maildir(path).remove(key)`. A message that
    vanishes or cannot be read while iterating is skipped with a log warning. Raises
    FileNotFoundError when path is not a Maildir.
    """
    if not is_maildir(path):
        raise FileNotFoundError(f"Not a Maildir (no cur/ and new/): {path}")
    box = mailbox.Maildir(os.fspath(path), factory=None, create=False)
    for key in sorted(box.iterkeys()):
        try:
            with box.get_file(key) as handle:
                raw = handle.read(MAX_MESSAGE_BYTES)
        except (KeyError, OSError) as exc:
            logger.warning("bounces: cannot read Maildir message %s: %r", key, exc)
            continue
        yield key, raw


def iter_mbox(path: str | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """(key, raw bytes) for each message in the mbox file at path, in file order; key is the
    message's index as a string. The "From " separator line is not part of the bytes. Raises
    FileNotFoundError when the file does not exist."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"No mbox file: {path}")
    box = mailbox.mbox(os.fspath(path), create=False)
    try:
        for key in box.iterkeys():
            try:
                raw = box.get_bytes(key)
            except (KeyError, OSError) as exc:
                logger.warning("bounces: cannot read mbox message %s: %r", key, exc)
                continue
            yield str(key), raw[:MAX_MESSAGE_BYTES]
    finally:
        box.close()


def process_mailbox(
    path: str | os.PathLike[str],
    handle: Callable[[InboundReport], None],
    *,
    delete: bool = False,
) -> ProcessResult:
    """Parse every message of the Maildir (a directory) or mbox file at path and call handle with
    its InboundReport (source_id set to the message's key).

    Never stops on one message: bytes that are not an e-mail message, or that the parser cannot
    read, are handed over as kind "unknown" with the reason (and logged). When handle raises, the
    error is logged, counted as failed, and the message is kept. With delete=True, every message
    whose handle call returned is removed from the mailbox (the mbox is locked and rewritten once at
    the end). Returns a ProcessResult.
    """
    result = ProcessResult()
    if is_maildir(path):
        source: Iterator[tuple[str, bytes]] = iter_maildir(path)
        box: mailbox.Mailbox | None = mailbox.Maildir(os.fspath(path), factory=None, create=False) if delete else None
    else:
        source = iter_mbox(path)
        box = mailbox.mbox(os.fspath(path), create=False) if delete else None
    done: list[str] = []
    for key, raw in source:
        result.seen += 1
        report = _report(key, raw)
        try:
            handle(report)
        except Exception:  # one bad message or one failing handler must not stop the run
            logger.exception("bounces: handling %s (%s) failed; the message is kept", key, report.kind)
            result.failed += 1
            continue
        result.handled += 1
        result.kinds[report.kind] += 1
        done.append(key)
    if box is not None and done:
        try:
            result.deleted = _delete(box, done)
        except (mailbox.Error, OSError):  # kept: the next run sees them again, the caller is idempotent
            logger.exception("bounces: could not delete %d handled messages from %s", len(done), path)
    return result


def _report(key: str, raw: bytes) -> InboundReport:
    try:
        report = parse_message(raw)
    except Exception as exc:  # parse_message does not raise; this is the last guard
        logger.exception("bounces: cannot parse %s", key)
        return InboundReport(kind="unknown", reason=f"malformed message: {type(exc).__name__}", source_id=key)
    if report is None:
        logger.warning("bounces: %s is not an e-mail message (%d bytes)", key, len(raw))
        return InboundReport(kind="unknown", reason="not an e-mail message", source_id=key)
    return replace(report, source_id=key)


def _delete(box: mailbox.Mailbox, keys: list[str]) -> int:
    deleted = 0
    is_mbox = isinstance(box, mailbox.mbox)
    if is_mbox:
        box.lock()
    try:
        for key in keys:
            try:
                box.remove(int(key) if is_mbox else key)
            except KeyError:
                continue
            deleted += 1
        if is_mbox:
            box.flush()
    finally:
        if is_mbox:
            box.unlock()
        box.close()
    return deleted
