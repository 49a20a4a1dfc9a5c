"""pglab entry point and router: `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="pglab - policy-gradient lab", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/fitness_center:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
    st.Page("pages/gradient_lab.py", title="Gradient Lab", icon=":material/science:"),
    st.Page("pages/reproduce.py", title="Reproduce", icon=":material/replay:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("pages/rlhf.py", title="RLHF Lab", icon=":material/thumbs_up_down:"),
    st.Page("pages/sweeps.py", title="Sweeps", icon=":material/tune:"),
]

page = st.navigation(PAGES)
try:
    from pglab import ui

    ui.install_host_check()  # plain HTTP checks the Host header too (see its docstring)
    ui.steady_progress()  # live progress bars step, not glide: CPU the runs need
except ImportError:
    pass
with st.sidebar:
    from pglab import ui

    # live count, refreshed every 3 s while runs train (on Train by the page's own timer)
    ui.sidebar_status(refresh=page.url_path != "train")
page.run()
