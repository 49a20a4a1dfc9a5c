"""pglab entry point and router: `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="pglab - policy-gradient lab", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/fitness_center:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
    st.Page("pages/gradient_lab.py", title="Gradient Lab", icon=":material/science:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("pages/sweeps.py", title="Sweeps", icon=":material/tune:"),
]

page = st.navigation(PAGES)
with st.sidebar:
    try:
        from pglab import ui

        n_active = len(ui.get_registry().active_ids())
        st.caption(f"{n_active} run(s) training in this lab" if n_active else "No run is training")
    except (ImportError, ValueError) as exc:  # the engine or store is unavailable
        st.caption(f"Run engine unavailable: {exc}")
page.run()
