"""Traffic charts (PNG) and the messages that go with them.

Drawn with matplotlib's Agg canvas on a ``Figure`` of its own (no pyplot: no global
figure state, so worker threads can draw side by side). matplotlib is imported when the
first chart is drawn, so commands that never draw one do not pay for the import.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.domain.slack_text import escape
from bot.render.blocks import Reply, context, section

_UNITS = ((1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s"), (1.0, "B/s"))


@dataclass(frozen=True)
class Chart:
    filename: str
    title: str
    png: bytes


@dataclass(frozen=True)
class Line:
    """One VIF's direction: ``label`` such as ``0 rx``, times in Unix seconds, bytes per second."""

    label: str
    times: Sequence[int]
    values: Sequence[float]
    dashed: bool = False


def traffic_chart(vm_name: str, pool: str, lines: Sequence[Line], minutes: int) -> Chart:
    """The VM's VIF receive/transmit rates as one PNG (rx solid, tx dashed, one colour per VIF)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    peak = max((v for line in lines for v in line.values if not math.isnan(v)), default=0.0)
    scale, unit = next(((s, u) for s, u in _UNITS if peak >= s), _UNITS[-1])
    figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    colours: dict[str, str] = {}
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for line in lines:
        device = line.label.split(" ", 1)[0]
        colour = colours.setdefault(device, palette[len(colours) % len(palette)])
        axes.plot(list(line.times), [v / scale for v in line.values], label=f"VIF {line.label}", color=colour,
                  linestyle="--" if line.dashed else "-", linewidth=1.4)
    title = f"{vm_name} (pool {pool}): VIF traffic, last {minutes} min"
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(unit)
    axes.set_xlabel("UTC  (rx / tx as the guest sees them)")
    axes.xaxis.set_major_locator(MultipleLocator(600 if minutes <= 120 else 3600))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: datetime.fromtimestamp(x, UTC).strftime("%H:%M")))
    axes.grid(True, alpha=0.3)
    axes.set_ylim(bottom=0)
    if lines:
        axes.legend(loc="upper left", fontsize=8, ncols=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in vm_name)
    return Chart(filename=f"traffic-{safe}.png", title=title, png=buffer.getvalue())


def chart_unavailable(vm_name: str, reason: str, *, in_alert: bool) -> Reply:
    """Said in the alert thread (or to the person who pressed the button) instead of the chart."""
    text = f"No traffic chart for {vm_name}: {reason}."
    if in_alert:
        text += " The diagnosis above stands without it."
    return Reply(text=text, blocks=[context(":information_source: " + escape(text))], ephemeral=not in_alert,
                 error=not in_alert)


def chart_sent(vm_name: str, where: str) -> Reply:
    text = f"Traffic of {vm_name} over the last hour: {where}."
    return Reply(text=text, blocks=[section(escape(text))])


def no_uploads(vm_name: str) -> Reply:
    text = f"Charts are uploaded to Slack; here there is nowhere to show the one of {vm_name}."
    return Reply(text=text, blocks=[section(":information_source: " + escape(text))], error=True)
