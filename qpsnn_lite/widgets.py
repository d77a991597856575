"""Interactive explorers that keep working in the static rendered book.

Pattern (why: ``docs/design.md``, "Static widgets"): render one small figure per slider position when the cell executes,
wrap each as an ``ipywidgets.Image`` inside an ``ipywidgets.Stack``, and link the slider's ``index`` to the stack's
``selected_index`` on the client side with ``jslink``. In Jupyter and Colab it responds at once; in the rendered book the
saved widget state does the same without a kernel. Used from chapter 01 on.

Works on ipywidgets 7.7 (what a Colab runtime ships and imports at kernel start, so the package must not upgrade it)
and 8.x (what the book is built with). ``Stack`` exists only in 8.x; on 7.x the same role is played by an
``Accordion`` whose headers are hidden with a CSS class (a hidden ``HTML`` widget holding the ``<style>`` rule travels
with the widget), and its ``selected_index`` is ``jslink``-ed to the slider exactly as the stack's is: the open child
changes in the browser, without a kernel round trip. (Not a ``Tab``: ipywidgets 7's ``TabView`` loses its selected
child when nested in another ``Tab``, as in :func:`grid_stack` (seen with html-manager 0.20), and then shows no image
until the slider moves.) If the style rule is ever not applied, the headers show the slider's labels and clicking one
moves the slider.
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["slider_stack", "grid_stack", "DEFAULT_DPI", "TAB_TITLE_CHARS"]

#: Resolution of the frames. A 6-inch figure at 110 dpi is 660 px wide, about the width of the book's text
#: column, so a 9-point title is about 14 px high (at 66-72 dpi it was 7-9 px and hard to read). The images may
#: shrink with the page (``max_width: 100%``), never grow beyond their pixels.
DEFAULT_DPI = 110
#: Longest tab title that the tab bars of JupyterLab, Colab and the book show without cutting it (144 px; "criterion = firing_rat..." was cut).
TAB_TITLE_CHARS = 16

#: CSS class of the ``Accordion`` that stands in for ``Stack`` on ipywidgets 7 (its headers are hidden). Not
#: ``qpsnn-stack-...``: that prefix marks the images (``tools/browser_check.py`` looks for it).
FALLBACK_CLASS = "qpsnn-headless"
#: The rule that hides those headers and the contents' frame (ipywidgets 7's Phosphor classes ``p-``, Lumino's ``lm-``).
FALLBACK_CSS = (
    f".{FALLBACK_CLASS} > .p-Collapse > .p-Collapse-header, .{FALLBACK_CLASS} > .lm-Collapse > .lm-Collapse-header "
    "{display: none !important;}\n"
    f".{FALLBACK_CLASS} > .p-Collapse > .p-Collapse-contents, .{FALLBACK_CLASS} > .lm-Collapse > .lm-Collapse-contents "
    "{border: none !important; padding: 0 !important;}"
)


def _has_stack() -> bool:
    """True on ipywidgets 8.x, which has ``Stack``; False on 7.x. (A function so that tests can try the 7.x path.)"""
    import ipywidgets as w

    return hasattr(w, "Stack")


def _selector(children: list, titles: list[str], start: int):
    """A container that shows only ``children[selected_index]``, starting at ``start``; returns it and extra widgets.

    ipywidgets 8: a ``Stack`` (nothing extra). ipywidgets 7: an ``Accordion`` with the class :data:`FALLBACK_CLASS`,
    titled like the slider's positions, plus the hidden ``HTML`` widget carrying :data:`FALLBACK_CSS`, to display beside
    it.
    """
    import ipywidgets as w

    if _has_stack():
        stack = w.Stack(children)
        stack.selected_index = start
        return stack, []
    accordion = w.Accordion(children=children)
    for i, title in enumerate(titles):
        accordion.set_title(i, title)
    accordion.add_class(FALLBACK_CLASS)
    accordion.selected_index = start
    style = w.HTML(value=f"<style>{FALLBACK_CSS}</style>", layout=w.Layout(display="none"))
    return accordion, [style]


def slider_stack(
    values: Sequence,
    render: Callable[[object], "object"],
    description: str,
    value=None,
    dpi: int = DEFAULT_DPI,
    readout: Callable[[object], str] = str,
):
    """A ``SelectionSlider`` over ``values`` showing ``render(v)`` (a matplotlib ``Figure``) for the chosen value.

    All figures are rendered now, so the widget also works without a kernel. Returns the ``VBox`` to display: its
    children are the slider and the stack (ipywidgets 8: ``Stack``; 7: an ``Accordion`` without headers, then the
    hidden style widget), the slider's ``index`` ``jslink``-ed to the stack's ``selected_index``.
    """
    import ipywidgets as w

    from .plots import to_png

    values = list(values)
    if not values:
        raise ValueError("values is empty: give at least one slider position")
    images = []
    for i, v in enumerate(values):
        image = w.Image(
            value=to_png(render(v), dpi=dpi), format="png", layout=w.Layout(max_width="100%", height="auto")
        )
        image.add_class(f"qpsnn-stack-{i}")
        images.append(image)
    labels = [readout(v) for v in values]
    options = [(label, i) for i, label in enumerate(labels)]
    start = values.index(value) if value is not None else 0
    stack, extra = _selector(images, labels, start)
    slider = w.SelectionSlider(options=options, index=start, description=description,
                               style={"description_width": "initial"}, layout=w.Layout(width="520px"))
    w.jslink((slider, "index"), (stack, "selected_index"))
    return w.VBox([slider, stack, *extra])


def _short(value) -> str:
    """A tab title of at most :data:`TAB_TITLE_CHARS` characters for ``value`` (``firing_rate`` -> ``firing rate``)."""
    text = str(value).replace("_", " ")
    return text if len(text) <= TAB_TITLE_CHARS else text[: TAB_TITLE_CHARS - 1] + "."


def grid_stack(
    axes: dict[str, Sequence],
    render: Callable[..., "object"],
    dpi: int = DEFAULT_DPI,
    tab_title: Callable[[object], str] = _short,
):
    """Like :func:`slider_stack` with two controls: a slider over the first axis and tabs over the second.

    ``axes`` maps two control names to their values; ``render(a, b)`` returns a Figure. Implemented as a ``Tab`` of
    slider stacks (one tab per value of the second axis), so it too works without a kernel (on ipywidgets 7 and 8).
    The tabs are titled ``tab_title(b)`` (short: a tab bar cuts long titles), and the second axis' name goes into
    every slider's description (``"bit width (tabs: gamma)"``). The sliders of all tabs are ``jslink``-ed to the first
    one, so changing tab keeps the slider's position (client-side, so also on the static page).
    """
    import ipywidgets as w

    if len(axes) != 2:
        raise ValueError(f"grid_stack takes exactly two axes, got {list(axes)}")
    (first_name, first_values), (second_name, second_values) = axes.items()
    description = f"{first_name} (tabs: {second_name})"
    tabs = [slider_stack(first_values, lambda a, b=b: render(a, b), description, dpi=dpi) for b in second_values]
    sliders = [box.children[0] for box in tabs]
    for slider in sliders[1:]:
        w.jslink((sliders[0], "index"), (slider, "index"))
    tab = w.Tab(children=tabs)
    for i, b in enumerate(second_values):
        tab.set_title(i, tab_title(b))
    return tab
