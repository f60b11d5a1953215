"""The report as one self-contained HTML file: readable offline, e-mailable, nothing to fetch.

The Markdown page is converted with Python-Markdown (tables extension); every figure it references
is read from the report folder and embedded as a base64 `data:` URI; the style sheet is inline. A
reference that is not a file in the folder is refused rather than left pointing elsewhere.
"""

import base64
import html
import re
from pathlib import Path

import markdown

MIME = {".png": "image/png", ".svg": "image/svg+xml"}
_SRC = re.compile(r'src="([^"]*)"')

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f2f2f2; }
td:nth-child(n+3) { font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def _data_uri(folder: Path, name: str) -> str:
    path = folder / name
    if Path(name).name != name or path.suffix not in MIME or not path.is_file():
        raise ValueError(f"report figure {name!r} is not a .png/.svg file in {folder}")
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{MIME[path.suffix]};base64,{encoded}"


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """The Markdown report as a standalone HTML page, figures from `folder` embedded."""
    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")
    body = _SRC.sub(lambda m: f'src="{_data_uri(Path(folder), html.unescape(m[1]))}"', body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
