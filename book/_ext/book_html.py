"""A small Sphinx extension of the book: drop duplicate <script> entries from every page.

Jupyter Book 1.x loads sphinx-thebe both directly and through sphinx-book-theme, so every page declared the inline
`const THEBE_JS_URL` twice and the browser logged "Identifier 'THEBE_JS_URL' has already been declared" (a console
error on every page, found by tools/browser_check.py). Keeping the first of identical script entries fixes it.
"""
from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
