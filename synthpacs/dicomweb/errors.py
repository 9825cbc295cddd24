"""HTTP errors of the DICOMweb front end. Each becomes a JSON body
``{"error": <reason>, "message": <what is wrong>, "status": <code>}`` (see
:func:`synthpacs.web.create_app`), with the CORS headers of every response."""

from __future__ import annotations

from werkzeug.exceptions import HTTPException


class DicomWebError(HTTPException):
    """An error answered to the client; ``description`` names the problem."""

    code = 400

    def __init__(self, message: str):
        super().__init__(description=message)


class BadRequest(DicomWebError):
    code = 400
    name = "Bad Request"


class NotFound(DicomWebError):
    code = 404
    name = "Not Found"


class NotAcceptable(DicomWebError):
    code = 406
    name = "Not Acceptable"


class PayloadTooLarge(DicomWebError):
    code = 413
    name = "Payload Too Large"


class UnsupportedMediaType(DicomWebError):
    code = 415
    name = "Unsupported Media Type"
