"""Print the README's parameter tables from the algorithms themselves, so they never drift.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/algorithm_docs.py > /tmp/tables.md
"""

from __future__ import annotations

import sys

from qgis.core import QgsApplication, QgsProcessingOutputDefinition
from qgis.PyQt.QtCore import QDate, QDateTime, QTime

ORDER = ["samplescene", "preparel2a", "downloadl2a", "makepatches", "trainhead", "finetunelayer4", "predict", "exportonnx", "evaluate"]


def _typed(value) -> str:
    """A value as a user types it in qgis_process or the dialog, not as Python shows the object."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, QDateTime):
        return value.toString("yyyy-MM-ddTHH:mm:ss")
    if isinstance(value, QDate):
        days = QDate.currentDate().daysTo(value)
        relative = "today" if days == 0 else f"today {'+' if days > 0 else '−'} {abs(days)} days"
        return f"{value.toString('yyyy-MM-dd')} ({relative})"
    if isinstance(value, QTime):
        return value.toString("HH:mm:ss")
    if isinstance(value, (list, tuple)):
        return ",".join(_typed(item) for item in value)
    return str(value)


def _default(param) -> str:
    value = param.defaultValue()
    if value is None or value == "":
        return ""
    options = getattr(param, "options", None)
    if callable(options) and isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(options()[value])
        except IndexError:
            pass
    return _typed(value)


def main() -> None:
    app = QgsApplication([], False)
    app.initQgis()
    from scl_deeplab.provider.provider import SclDeepLabProvider

    provider = SclDeepLabProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    by_name = {alg.name(): alg for alg in provider.algorithms()}
    out = []
    for name in ORDER + sorted(set(by_name) - set(ORDER)):
        alg = by_name.get(name)
        if alg is None:
            continue
        out.append(f"#### `scldeeplab:{name}`: {alg.displayName()}\n")
        out.append("| parameter | description | default |\n|---|---|---|")
        for p in alg.parameterDefinitions():
            optional = " (optional)" if p.flags() & p.FlagOptional else ""
            out.append(f"| `{p.name()}` | {p.description()}{optional} | {_default(p)} |")
        outputs = [o for o in alg.outputDefinitions() if isinstance(o, QgsProcessingOutputDefinition)]
        names = ", ".join(f"`{o.name()}`" for o in outputs)
        out.append(f"\nOutputs: {names}\n")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
