"""Draw docs/figures/layers.svg: mpcdp's layers, with the import arrows between them read from the source.

    python docs/figures/layers.py [--root CHECKOUT] [--out docs/figures/layers.svg]

Modules are grouped into boxes; an arrow from box A to box B means some
module of A imports some module of B (anywhere in the file), its width
growing with the number of such imports. The import parser is the layer
test's (tests/lib/test_layers.py), so the picture and the test read the same graph.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "mpcdp-layers"  # the same SVG bytes for the same graph
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# box -> (column centre, row, width, label); rows from the bottom (0) up
BOXES = {
    "foundations": (
        5.0,
        0,
        9.6,
        "foundations: ring.py (Z_2^64, fixed point, headroom) · prg.py (AES-CTR) · sharing.py · registry.py · names.py",
    ),
    "dp": (
        5.0,
        1,
        9.6,
        "dp/: exact samplers · local DP · central and distributed noise · privacy loss · mechanism registry · ledger",
    ),
    "protocol": (1.25, 2, 2.3, "protocol/\nspec · statistics · noise\nparty · coordinator · masked\nin-memory driver"),
    "survey": (3.75, 2, 2.3, "survey/\ndefinition · questions · local\nsheet · noise · release\nrespondent · proved"),
    "text": (
        6.25,
        2,
        2.3,
        "text/\nembeddings · neighbors · nearest\nspans · lexicon · render\nmechanisms · sanitizer · corpus",
    ),
    "other": (8.75, 2, 2.3, "{names}"),
    "wire": (8.75, 3, 2.3, "services/wire/\ngenerated from\nprotos/mpcdp/v1/*.proto"),
    "support": (
        5.0,
        3,
        4.6,
        "services: tls · server · link · channels · streams\nfederation · convert · releases · data · ledgers · audit",
    ),
    "nodes": (1.25, 4, 2.3, "federation nodes\nparty_node · mpc_node\ncoordinator_node"),
    "survey_nodes": (3.75, 4, 2.3, "services/survey/\naggregator · store · http\ntransport · collector · verifier"),
    "text_node": (6.25, 4, 2.3, "text_node"),
    "analyst": (8.75, 4, 2.3, "analyst client\nservices/analyst.py"),
    "cli": (3.75, 5, 7.1, "the mpcdp command: services/cli.py, services/commands/ (one module per subcommand)"),
    "simulations": (
        8.75,
        5,
        2.3,
        "local processes: launch.py\nsimulation.py · swarm.py\nsurvey/simulation · https_local",
    ),
}
PACKAGE_NOTES = {
    "mpc": ": honest-majority\nengine, comparisons",
    "vdaf": ": Prio3 (VDAF 08)",
    "tokens": ": blind RSA,\nPrivacy Pass",
}
ROW_HEIGHT, BOX_HEIGHT = 1.6, 0.95
LIBRARY_COLOUR, SERVICE_COLOUR, WIRE_COLOUR = "#dbe9f6", "#fbe3c8", "#e6e6e6"


def load_layer_test(repo: Path):
    """This checkout's layer test, reading the tree at ``repo``."""
    spec = importlib.util.spec_from_file_location("mpcdp_layer_test", REPO / "tests" / "lib" / "test_layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    module.ROOT = repo
    return module


def box_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "mpcdp":
        if len(parts) == 1 or parts[1] in ("ring", "prg", "sharing", "registry", "names"):
            return "foundations"
        return parts[1] if parts[1] in ("dp", "protocol", "survey", "text") else "other:" + parts[1]
    if parts[0] != "services":
        return ""
    sub = parts[1] if len(parts) > 1 else ""
    if parts[-1] in ("simulation", "https_local") or sub in ("launch", "swarm"):
        return "simulations"
    return {
        "wire": "wire",
        "party_node": "nodes",
        "mpc_node": "nodes",
        "coordinator_node": "nodes",
        "survey": "survey_nodes",
        "text_node": "text_node",
        "analyst": "analyst",
        "cli": "cli",
        "commands": "cli",
    }.get(sub, "support")


def arrows(repo: Path) -> tuple[collections.Counter, set[str]]:
    layers = load_layer_test(repo)
    files = {
        layers.module_name(p): p
        for top in ("mpcdp", "services")
        for p in sorted((repo / top).rglob("*.py"))
        if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    }
    counts: collections.Counter = collections.Counter()
    others = {box_of(m) for m in files if box_of(m).startswith("other:")}
    for name, path in files.items():
        for imp in layers.imports_of(name, path, set(files)):
            a, b = box_of(name), box_of(imp.target)
            if b.startswith("services") or not b or a == b:
                continue
            counts[(a, b)] += 1
    return counts, others


def width_of(box: str) -> float:
    return BOXES["other" if box.startswith("other:") else box][2]


def centre(box: str) -> tuple[float, float]:
    x, row, _, _ = BOXES["other" if box.startswith("other:") else box]
    return x, row * ROW_HEIGHT


def draw(repo: Path, out: Path) -> None:
    counts, others = arrows(repo)
    fig, ax = plt.subplots(figsize=(11, 8.2))
    ax.set_xlim(-0.2, 10.2)
    ax.set_ylim(-0.8, 5 * ROW_HEIGHT + 0.9)
    ax.axis("off")
    for key, (x, row, width, label) in BOXES.items():
        if key == "other":
            if not others:
                continue
            label = "\n".join(f"{o.split(':')[1]}/" + PACKAGE_NOTES.get(o.split(":")[1], "") for o in sorted(others))
        colour = WIRE_COLOUR if key == "wire" else LIBRARY_COLOUR if row <= 2 else SERVICE_COLOUR
        y = row * ROW_HEIGHT
        ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y - BOX_HEIGHT / 2),
                width,
                BOX_HEIGHT,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                fc=colour,
                ec="#444444",
                lw=1,
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=8.2, family="DejaVu Sans")
    boundary = 2.5 * ROW_HEIGHT
    ax.plot([-0.1, 10.1], [boundary, boundary], ls="--", color="#aa3333", lw=1.2)
    ax.text(
        -0.1,
        boundary + 0.08,
        "services/: gRPC adapters, files, processes",
        ha="left",
        va="bottom",
        fontsize=8.5,
        color="#aa3333",
    )
    ax.text(
        -0.1,
        boundary - 0.08,
        "mpcdp/: the pure library (never imports grpc, protobuf or services/)",
        ha="left",
        va="top",
        fontsize=8.5,
        color="#aa3333",
    )
    for (a, b), n in sorted(counts.items()):
        (xa, ya), (xb, yb) = centre(a), centre(b)
        wa, wb = width_of(a), width_of(b)
        # spread the ends along the boxes' edges, towards the other end
        sx = xa + max(-0.4 * wa, min(0.4 * wa, 0.25 * (xb - xa)))
        ex = xb + max(-0.4 * wb, min(0.4 * wb, 0.25 * (xa - xb)))
        if ya == yb and abs(xa - xb) > (wa + wb) / 2 + 0.5:  # boxes in between: arc over them
            start, end, colour = (xa, ya + BOX_HEIGHT / 2), (xb, yb + BOX_HEIGHT / 2), "#777777"
        elif ya == yb:
            start, end, colour = (xa + np.sign(xb - xa) * wa / 2, ya), (xb - np.sign(xb - xa) * wb / 2, yb), "#777777"
        elif yb < ya:
            start, end, colour = (sx, ya - BOX_HEIGHT / 2), (ex, yb + BOX_HEIGHT / 2), "#1f4e79"
        else:
            start, end, colour = (sx, ya + BOX_HEIGHT / 2), (ex, yb - BOX_HEIGHT / 2), "#cc0000"
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=9,
                lw=0.4 + 0.25 * min(n, 12),
                alpha=0.6,
                color=colour,
                connectionstyle=f"arc3,rad={np.sign(xa - xb) * 0.07 if start[1] == end[1] else 0.05}",
            )
        )
    ax.set_title(
        "mpcdp: layers and import arrows (an arrow A -> B: a module of A imports one of B; width ~ number of imports)",
        fontsize=9.5,
    )
    fig.tight_layout()
    fig.savefig(out, format=out.suffix[1:], **({"metadata": {"Date": None}} if out.suffix == ".svg" else {}))
    plt.close(fig)
    upward = sorted(f"{a} -> {b}" for a, b in counts if centre(b)[1] > centre(a)[1])
    print(f"wrote {out}: {len(counts)} arrows between boxes" + (f"; upward: {', '.join(upward)}" if upward else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw mpcdp's layer picture from the import graph.")
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout to read (default: this one)")
    parser.add_argument("--out", type=Path, default=HERE / "layers.svg", help="the SVG to write")
    args = parser.parse_args()
    draw(args.root.resolve(), args.out)


if __name__ == "__main__":
    main()
