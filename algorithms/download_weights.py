"""``scldeeplab:downloadweights``: fetch a pretrained weight set through QGIS's network stack."""

from __future__ import annotations

from qgis.core import (
    QgsBlockingNetworkRequest,
    QgsFeedback,
    QgsNetworkAccessManager,
    QgsProcessingOutputFile,
    QgsProcessingParameterAuthConfig,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtNetwork import QNetworkProxy, QNetworkReply, QNetworkRequest

from ..model_core.net.download import download
from ..model_core.net.transport import Reply, TransportFailure, http_failure, unreachable
from ..model_core.net.weight_sets import BASE_URL_ENV, NAMES, summary, weight_set
from .base import FeedbackProgress, SclAlgorithm, core_errors_as_processing_exceptions

_PROXY_ERRORS = (
    QNetworkReply.NetworkError.ProxyConnectionRefusedError,
    QNetworkReply.NetworkError.ProxyConnectionClosedError,
    QNetworkReply.NetworkError.ProxyNotFoundError,
    QNetworkReply.NetworkError.ProxyTimeoutError,
)
# Errors after which the same request may well work: the line dropped, or the server was slow.
_PASSING_ERRORS = (
    QNetworkReply.NetworkError.RemoteHostClosedError,
    QNetworkReply.NetworkError.TimeoutError,
    QNetworkReply.NetworkError.TemporaryNetworkFailureError,
    QNetworkReply.NetworkError.NetworkSessionFailedError,
    QNetworkReply.NetworkError.UnknownNetworkError,
)


def _proxy_name() -> str | None:
    proxy = QgsNetworkAccessManager.instance().fallbackProxy()
    if proxy.type() in (QNetworkProxy.ProxyType.NoProxy, QNetworkProxy.ProxyType.DefaultProxy) or not proxy.hostName():
        return None
    return f"{proxy.hostName()}:{proxy.port()}"


class QgisTransport:
    """Range requests through QGIS's network stack, so QGIS's proxy, SSL and authentication settings apply."""

    def __init__(self, feedback: QgsFeedback | None, auth_config: str = "") -> None:
        # A feedback of its own, canceled with the algorithm's: the request aborts at once, while the
        # algorithm's progress bar stays the whole download's.
        self._cancel = QgsFeedback()
        if feedback is not None:
            feedback.canceled.connect(self._cancel.cancel)
            if feedback.isCanceled():
                self._cancel.cancel()
        self._auth_config = auth_config

    def get(self, url: str, start: int, end: int) -> Reply:
        request = QNetworkRequest(QUrl(url))
        request.setRawHeader(b"Range", f"bytes={start}-{end}".encode())
        # Qt follows redirects (mirrors often send files on to a CDN) and keeps the Range header.
        request.setAttribute(QNetworkRequest.Attribute.RedirectPolicyAttribute, QNetworkRequest.RedirectPolicy.NoLessSafeRedirectPolicy)
        blocking = QgsBlockingNetworkRequest()
        if self._auth_config:
            blocking.setAuthCfg(self._auth_config)
        code = blocking.get(request, True, self._cancel)
        reply = blocking.reply()
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        content_range = bytes(reply.rawHeader(b"Content-Range")).decode("latin-1") or None
        if code == QgsBlockingNetworkRequest.NoError:
            return Reply(int(status or 200), bytes(reply.content()), content_range)
        if status == 416:
            return Reply(416, b"", content_range)
        if status and int(status) >= 400:
            reason = reply.attribute(QNetworkRequest.Attribute.HttpReasonPhraseAttribute) or ""
            raise http_failure(int(status), str(reason), url, _proxy_name())
        error = reply.error()
        if error == QNetworkReply.NetworkError.ProxyAuthenticationRequiredError:
            raise http_failure(407, "Proxy Authentication Required", url, _proxy_name())
        if error in _PROXY_ERRORS:
            raise unreachable(url, blocking.errorMessage(), _proxy_name() or "set in QGIS")
        if error == QNetworkReply.NetworkError.OperationCanceledError:
            raise TransportFailure("the request was canceled")
        # An answer that had begun (a status below 400) and then failed broke off in transfer.
        if status or error in _PASSING_ERRORS or code == QgsBlockingNetworkRequest.TimeoutError:
            raise TransportFailure(f"the transfer broke off ({blocking.errorMessage()})", transient=True)
        raise unreachable(url, blocking.errorMessage())


class DownloadWeights(SclAlgorithm):
    """Downloads one named set of pretrained weights into the folder training looks in."""

    NAME, BASE_URL, AUTH_CONFIG, OUTPUT = "NAME", "BASE_URL", "AUTH_CONFIG", "OUTPUT"
    GROUP = "setup"
    HELP = (
        "Downloads a set of pretrained weights for PRETRAINED of Train head, once, into the folder training looks "
        "in: torch hub's cache ($TORCH_HOME/hub/checkpoints, usually ~/.cache/torch/hub/checkpoints) for files "
        "named the torch hub way, otherwise the plugin's weights folder (SCL_DEEPLAB_WEIGHTS_DIR, usually "
        "~/.cache/scl_deeplab/weights). Training itself never downloads.\n\n"
        "The file arrives in 4 MB pieces as <name>.part and is renamed only once its SHA-256 matches the "
        "published one; a file that does not match is deleted. Cancel, or a broken connection, keeps the part: "
        "running again resumes it. The request goes through QGIS's network settings (Settings > Options > "
        "Network: proxy, SSL) and the optional authentication configuration.\n\n"
        "Base URL: a mirror (an organisation's proxy cache, a folder on an intranet server) that holds the same "
        f"files; it replaces scheme, host and folder of the download address, the file name stays. Empty: "
        f"the environment variable {BASE_URL_ENV}, else the publisher's server.\n\n"
        "Offline? Download the file named below elsewhere and copy it into the folder given, under the same "
        "name.\n\n"
        "Size and time: about 100 MB (backbones) to 170 MB (COCO DeepLabv3); a minute or two on a typical "
        "connection.\n\n"
        "The weight sets:\n"
    )

    def name(self) -> str:
        return "downloadweights"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Download pretrained weights")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr(self.HELP) + summary()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterEnum(
            self.NAME, self.tr("Weights"), options=list(NAMES), defaultValue="coco", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterString(
            self.BASE_URL, self.tr("Base URL of a mirror (empty: the publisher's server)"), optional=True,
            defaultValue=""))
        self.addParameter(QgsProcessingParameterAuthConfig(
            self.AUTH_CONFIG, self.tr("Authentication (only if the server needs it)"), optional=True))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT, self.tr("Weights file")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        weights = weight_set(self.parameterAsEnumString(parameters, self.NAME, context) or "coco")
        base_url = self.parameterAsString(parameters, self.BASE_URL, context).strip() or None
        transport = QgisTransport(feedback, self.parameterAsString(parameters, self.AUTH_CONFIG, context))
        with core_errors_as_processing_exceptions():
            path = download(weights, base_url=base_url, transport=transport, progress=FeedbackProgress(feedback))
        return {self.OUTPUT: str(path)}
