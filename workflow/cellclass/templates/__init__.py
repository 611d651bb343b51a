"""Takes a page's words and numbers, gives its text: every HTML page and the package README are Jinja2 templates
in this folder. HTML (.html) is autoescaped, so a name with `<` or `&` shows as text; Markdown (.md) is not.
"""

from functools import cache

import jinja2


@cache
def environment():
    """One loader for the folder; undefined names fail loudly rather than render as blanks."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cellclass", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name, **context):
    """The text of template `name` (a file in this folder) filled with `context`."""
    return environment().get_template(name).render(**context)
