"""pglab entry point and router: `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="pglab - policy-gradient lab", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/fitness_center:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
    st.Page("pages/gradient_lab.py", title="Gradient Lab", icon=":material/science:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]

page = st.navigation(PAGES)
with st.sidebar:
    from pglab import ui

    ui.sidebar_status()  # live count, refreshed every second while runs train
page.run()
