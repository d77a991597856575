"""Interactive explorers that keep working in the static rendered book.

Pattern (``WIDGETS.md`` of the design notes): render one small figure per slider position when the cell executes,
wrap each as an ``ipywidgets.Image`` inside an ``ipywidgets.Stack``, and link the slider's ``index`` to the stack's
``selected_index`` on the client side with ``jslink``. In Jupyter and Colab it responds at once; in the rendered book the
saved widget state does the same without a kernel. Used from chapter 01 on.
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["slider_stack", "grid_stack"]


def slider_stack(
    values: Sequence,
    render: Callable[[object], "object"],
    description: str,
    value=None,
    dpi: int = 72,
    readout: Callable[[object], str] = str,
):
    """A ``SelectionSlider`` over ``values`` showing ``render(v)`` (a matplotlib ``Figure``) for the chosen value.

    All figures are rendered now, so the widget also works without a kernel. Returns the ``VBox`` to display.
    """
    import ipywidgets as w

    from .plots import to_png

    values = list(values)
    if not values:
        raise ValueError("values is empty: give at least one slider position")
    images = []
    for i, v in enumerate(values):
        image = w.Image(value=to_png(render(v), dpi=dpi), format="png")
        image.add_class(f"qpsnn-stack-{i}")
        images.append(image)
    stack = w.Stack(images)
    options = [(readout(v), i) for i, v in enumerate(values)]
    start = values.index(value) if value is not None else 0
    slider = w.SelectionSlider(options=options, index=start, description=description,
                               style={"description_width": "initial"}, layout=w.Layout(width="420px"))
    stack.selected_index = start
    w.jslink((slider, "index"), (stack, "selected_index"))
    return w.VBox([slider, stack])


def grid_stack(
    axes: dict[str, Sequence],
    render: Callable[..., "object"],
    dpi: int = 72,
):
    """Like :func:`slider_stack` with two controls: a slider over the first axis and toggle buttons over the second.

    ``axes`` maps two control names to their values; ``render(a, b)`` returns a Figure. Implemented as a ``Tab`` of
    slider stacks (one tab per value of the second axis), so it too works without a kernel.
    """
    import ipywidgets as w

    if len(axes) != 2:
        raise ValueError(f"grid_stack takes exactly two axes, got {list(axes)}")
    (first_name, first_values), (second_name, second_values) = axes.items()
    tabs = [slider_stack(first_values, lambda a, b=b: render(a, b), first_name, dpi=dpi) for b in second_values]
    tab = w.Tab(children=tabs)
    for i, b in enumerate(second_values):
        tab.set_title(i, f"{second_name} = {b}")
    return tab
