"""The report: markdown tables of every figure with its alternatives, goals, a plot."""

from dataclasses import dataclass, field
from pathlib import Path

from bench.common import rows_label


@dataclass
class Table:
    """One section's figures."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Goal:
    """A target of the brief and whether this run met it."""

    name: str
    target: str
    measured: str
    met: bool


def markdown(title: str, preamble: list[str], goals: list[Goal], tables: list[Table]) -> str:
    """The whole report as markdown."""
    lines = [f"# {title}", "", *preamble, "", "## Goals", ""]
    verdicts = [[g.name, g.target, g.measured, "yes" if g.met else "**NO**"] for g in goals]
    lines += _grid(["goal", "target", "measured", "met"], verdicts)
    for table in tables:
        lines += ["", f"## {table.title}", "", *_grid(table.header, table.rows)]
        if table.notes:
            lines += ["", *(f"- {note}" for note in table.notes)]

    return "\n".join(lines) + "\n"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), line(["-" * width for width in widths]), *map(line, rows)]


def plot_load(panels: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """Load time against rows, a panel per phase, a line per loader, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes_row = pyplot.subplots(1, len(panels), figsize=(12, 5), dpi=110, sharey=True)
    for axes, (title, series) in zip(axes_row, panels.items(), strict=True):
        for name, points in series.items():
            sizes, seconds = zip(*points, strict=True)
            axes.plot(sizes, seconds, "--" if "raw" in name else "-", marker="o", label=name)
        sizes = sorted({size for points in series.values() for size, _ in points})
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sizes, [rows_label(size) for size in sizes])
        axes.minorticks_off()
        axes.set_xlabel("rows in the frame")
        axes.set_title(title)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize="small")
    axes_row[0].set_ylabel("seconds (log scale)")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def ratio(value: float) -> str:
    return f"{value:.2f}x"
