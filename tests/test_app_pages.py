"""Every page of the lab renders without an exception (Streamlit's AppTest, no browser)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py"))


def test_router_lists_every_page_file():
    app_src = (ROOT / "app.py").read_text()
    for name in PAGES:
        assert f'"pages/{name}"' in app_src, f"pages/{name} is not routed in app.py"


def test_home_renders_through_router():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "policy-gradient lab" in at.title[0].value


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title, f"pages/{page} shows no title"
