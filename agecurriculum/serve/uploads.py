"""The images of a ``POST /predict`` body: multipart form files, or the body itself as one image.

Parsed in memory from the body already read (and capped at the request size limit): nothing is spooled to a
temporary file, so no photo ever touches the disk. Anything wrong with the request as a whole raises
:class:`RequestError` with its HTTP status and a one-line message; what is wrong with one image (not an image,
truncated) is left to the decoder and becomes that image's ``error``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["MAX_BOUNDARY", "RAW_TYPES", "RequestError", "Upload", "parse_uploads"]

# Content types taken as one raw image body besides image/*: curl and most HTTP libraries label bytes this way.
RAW_TYPES = frozenset({"application/octet-stream"})
# Longest file name echoed back as a result's path; a client-chosen name is only a label.
_MAX_NAME = 255
#: Longest multipart boundary accepted, in bytes (400 beyond): python-multipart's own limit; RFC 2046 asks for at
#: most 70 characters.
MAX_BOUNDARY = 256


class RequestError(Exception):
    """A request the server refuses as a whole.

    Attributes:
        status: the HTTP status to answer with (4xx, or 503).
        message: one line saying what is wrong and what to send instead.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Upload:
    """One image of a request.

    Attributes:
        path: the file name the client gave (the result's ``path``), or None.
        label: what errors call the image: its file name, else ``"image N"`` (1-based, in request order).
        data: the file's bytes (a bytearray: the request body itself, or the form part's bytes, never a second copy).
    """

    path: str | None
    label: str
    data: bytes | bytearray


def parse_uploads(content_type: str | None, body: bytes | bytearray, max_images: int) -> list[Upload]:
    """The images of a request body, in order.

    Args:
        content_type: the request's ``Content-Type`` header.
        body: the whole body. A raw image body becomes the upload's data as it is (no copy); a form's files are
            copied out of it, so the caller can drop the body once this returns.
        max_images: most images accepted.

    Raises:
        RequestError: an empty body (400), a form without a file or a malformed one, its boundary included (400),
            too many images (413), or a content type that is neither ``multipart/form-data`` nor an image (415).
    """
    if not body:
        raise RequestError(
            400, "empty request: send an image as the body (Content-Type: image/...) or as multipart/form-data files"
        )
    mime, options = parse_options_header(content_type or "")
    mime_type = mime.decode("latin-1").lower()
    if mime_type == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise RequestError(400, "multipart/form-data without a boundary")
        if len(boundary) > MAX_BOUNDARY:
            raise RequestError(
                400, f"multipart/form-data boundary too long: {len(boundary)} bytes > limit of {MAX_BOUNDARY}"
            )
        uploads = _form_files(boundary, body)
        if not uploads:
            raise RequestError(
                400,
                "the form holds no file: send each image as a form field with a file name "
                "(e.g. curl -F file=@photo.jpg)",
            )
    elif mime_type.startswith("image/") or mime_type in RAW_TYPES:
        uploads = [(None, body)]
    else:
        shown = mime_type or "none"
        raise RequestError(
            415,
            f"unsupported Content-Type {shown!r}: send multipart/form-data files or one image "
            "as the body (image/jpeg, image/png, ...)",
        )
    if len(uploads) > max_images:
        raise RequestError(413, f"too many images in one request: {len(uploads)} > limit of {max_images}")
    return [Upload(name, name or f"image {i}", data) for i, (name, data) in enumerate(uploads, 1)]


def _form_files(boundary: bytes, body: bytes | bytearray) -> list[tuple[str | None, bytearray]]:
    """``(file name, bytes)`` of every part of a multipart body that has a file name; other fields are ignored."""
    parts: list[tuple[dict[str, str], bytearray]] = []
    header = {"field": b"", "value": b""}
    ended = []

    def part_begin() -> None:
        parts.append(({}, bytearray()))

    def header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def header_end() -> None:
        parts[-1][0][header["field"].decode("latin-1").lower()] = header["value"].decode("latin-1")
        header["field"], header["value"] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks = {
        "on_part_begin": part_begin,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_part_data": part_data,
        "on_end": lambda: ended.append(True),
    }
    try:
        # Inside the try: the parser refuses some boundaries itself (FormParserError, a ValueError), a client's
        # mistake like any other.
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as err:
        raise RequestError(400, f"malformed multipart/form-data body: {' '.join(str(err).split())}") from None
    if not ended:  # the closing boundary never came: a truncated upload
        raise RequestError(400, "malformed multipart/form-data body: it ends before the closing boundary")
    files = []
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get("content-disposition", ""))
        if b"filename" in disposition:
            files.append((_clean_name(disposition[b"filename"]), data))  # no bytes() copy: half the memory
    return files


def _clean_name(raw: bytes) -> str | None:
    """A client's file name fit to echo back: UTF-8 (browsers send it so), no control characters, not too long."""
    name = raw.decode("utf-8", errors="replace")
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")[:_MAX_NAME]
    return name or None
