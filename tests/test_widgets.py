"""The explorers of ``qpsnn_lite.widgets`` on the installed ipywidgets (8.x in CI, 7.7 on Colab) and, under 8.x, also
through the 7.x code path (an ``Accordion`` with hidden headers): structure (slider, stack of one image per position,
start position, labels) and the client-side ``jslink`` from the slider's ``index`` to the stack's ``selected_index``,
as it is saved in the widget state that the rendered book and Colab's front end read."""
from __future__ import annotations

import ipywidgets as w
import pytest
from ipywidgets.widgets.widget_link import Link
from matplotlib.figure import Figure

from qpsnn_lite import widgets

IPYWIDGETS_MAJOR = int(w.__version__.split(".")[0])


def _figure(*args) -> Figure:
    fig = Figure(figsize=(0.6, 0.4))
    fig.add_subplot().set_title(repr(args), fontsize=4)
    return fig


def _registry() -> dict:
    """Every live widget by model id (ipywidgets 8: ``widget._instances``; 7: ``Widget.widgets``)."""
    instances = getattr(w.widgets.widget, "_instances", None)
    return instances if instances is not None else w.Widget.widgets


def _links_from(widget) -> list:
    return [x for x in list(_registry().values()) if isinstance(x, Link) and x.source[0] is widget]


def _title(tab, i: int) -> str:
    return tab.titles[i] if hasattr(tab, "titles") else tab.get_title(i)


@pytest.fixture(autouse=True)
def close_new_widgets():
    """Close the widgets a test made, so tests do not see each other's links."""
    before = set(_registry())
    yield
    for model_id in set(_registry()) - before:
        widget = _registry().get(model_id)
        if widget is not None:
            widget.close()


@pytest.fixture(params=["installed", "7.x path"])
def path(request, monkeypatch):
    """Run a test on the installed ipywidgets' own path and on the ipywidgets 7 path (``Accordion`` for ``Stack``)."""
    if request.param == "7.x path":
        monkeypatch.setattr(widgets, "_has_stack", lambda: False)
    return request.param


def test_has_stack_follows_the_installed_ipywidgets():
    assert widgets._has_stack() is (IPYWIDGETS_MAJOR >= 8)
    assert widgets._has_stack() is hasattr(w, "Stack")


def _check_slider_stack(box, n: int, start: int, labels: list[str], links: int = 0):
    assert isinstance(box, w.VBox)
    slider, stack = box.children[:2]
    assert isinstance(slider, w.SelectionSlider)
    assert [label for label, _ in slider.options] == labels
    assert slider.index == start
    assert len(stack.children) == n
    assert all(isinstance(c, w.Image) and c.format == "png" and c.value[:8] == b"\x89PNG\r\n\x1a\n"
               for c in stack.children)
    assert [c._dom_classes for c in stack.children] == [(f"qpsnn-stack-{i}",) for i in range(n)]
    assert stack.selected_index == start
    if widgets._has_stack():
        assert type(stack) is w.Stack and len(box.children) == 2
    else:
        assert type(stack) is w.Accordion and widgets.FALLBACK_CLASS in stack._dom_classes
        assert [_title(stack, i) for i in range(n)] == labels
        (style,) = box.children[2:]
        assert isinstance(style, w.HTML) and style.layout.display == "none"
        assert style.value == f"<style>{widgets.FALLBACK_CSS}</style>"
        assert f".{widgets.FALLBACK_CLASS} > .p-Collapse > .p-Collapse-header" in widgets.FALLBACK_CSS
        assert not widgets.FALLBACK_CLASS.startswith("qpsnn-stack-")
    link = [x for x in _links_from(slider) if x.target[0] is stack]
    assert len(_links_from(slider)) == 1 + links and len(link) == 1
    (link,) = link
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")
    # as saved in the notebook's widget state (what the book's html-manager and Colab's front end read):
    state = link.get_state()
    assert state["source"] == [f"IPY_MODEL_{slider.model_id}", "index"]
    assert state["target"] == [f"IPY_MODEL_{stack.model_id}", "selected_index"]
    return slider, stack


def test_slider_stack_structure_and_link(path):
    values = [0.5, 1.0, 2.0]
    box = widgets.slider_stack(values, _figure, "current", value=1.0, dpi=20, readout=lambda v: f"{v:.1f} A")
    _check_slider_stack(box, 3, start=1, labels=["0.5 A", "1.0 A", "2.0 A"])


def test_slider_stack_defaults_to_the_first_value(path):
    box = widgets.slider_stack(range(1, 5), _figure, "bits", dpi=20)
    _check_slider_stack(box, 4, start=0, labels=["1", "2", "3", "4"])


def test_slider_stack_single_value(path):
    box = widgets.slider_stack(["only"], _figure, "x", dpi=20)
    _check_slider_stack(box, 1, start=0, labels=["only"])


def test_slider_stack_rejects_no_values():
    with pytest.raises(ValueError, match="empty"):
        widgets.slider_stack([], _figure, "x")


def test_grid_stack_is_a_tab_of_slider_stacks(path):
    seen = []

    def render(a, b):
        seen.append((a, b))
        return _figure(a, b)

    tab = widgets.grid_stack({"bit width": (2, 4), "gamma": ("max", "mean", "vanilla")}, render, dpi=20)
    assert isinstance(tab, w.Tab) and not isinstance(tab, getattr(w, "Stack", ()))
    assert widgets.FALLBACK_CLASS not in tab._dom_classes  # the categorical tab bar stays visible
    assert type(tab) is w.Tab
    # short titles: a tab bar cuts long ones ("firing_rat...")
    assert [_title(tab, i) for i in range(3)] == ["max", "mean", "vanilla"]
    assert len(tab.children) == 3
    checked = [_check_slider_stack(box, 2, start=0, labels=["2", "4"], links=2 if i == 0 else 0)
               for i, box in enumerate(tab.children)]
    sliders, stacks = zip(*checked)
    assert len({s.model_id for s in stacks}) == 3
    assert all(s.description == "bit width (tabs: gamma)" for s in sliders)
    assert sorted(seen) == sorted((a, b) for a in (2, 4) for b in ("max", "mean", "vanilla"))
    # the sliders of all tabs move together (client-side), so changing tab keeps the bit width
    links = [x for x in _links_from(sliders[0]) if x.target[0] is not stacks[0]]
    assert {(x.source, x.target) for x in links} == {((sliders[0], "index"), (s, "index")) for s in sliders[1:]}
    for x, slider in zip(links, sliders[1:]):
        state = x.get_state()
        assert state["source"] == [f"IPY_MODEL_{sliders[0].model_id}", "index"]
        assert state["target"] == [f"IPY_MODEL_{slider.model_id}", "index"]


def test_tab_titles_are_short_and_custom():
    assert widgets._short("firing_rate") == "firing rate"
    assert widgets._short("percentile") == "percentile"
    assert len(widgets._short("a_very_long_criterion")) == widgets.TAB_TITLE_CHARS
    tab = widgets.grid_stack({"r": (0.5,), "criterion": ("firing_rate", "l1")}, _figure, dpi=20,
                             tab_title=str.upper)
    assert [_title(tab, i) for i in range(2)] == ["FIRING_RATE", "L1"]


def test_frames_are_legible_by_default():
    """At the default dpi a 6-inch frame is about the text column's width, and it may shrink with the page."""
    fig = Figure(figsize=(6.0, 2.4))
    fig.add_subplot().set_title("title", fontsize=9)
    box = widgets.slider_stack([1], lambda v: fig, "x")
    image = box.children[1].children[0]
    import struct
    width = struct.unpack(">I", image.value[16:20])[0]
    assert widgets.DEFAULT_DPI >= 100 and width >= 600
    assert 9 / 72 * widgets.DEFAULT_DPI >= 12  # a 9-point title is at least 12 px high
    assert image.layout.max_width == "100%"


def test_grid_stack_needs_two_axes():
    with pytest.raises(ValueError, match="exactly two axes"):
        widgets.grid_stack({"a": (1, 2)}, _figure)
