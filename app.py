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
except ImportError:
    pass
with st.sidebar:
    try:
        from pglab import ui

        n_active = len(ui.get_registry().active_ids())
        st.caption(f"{n_active} run(s) training in this lab" if n_active else "No run is training")
    except Exception as exc:  # the engine or store is unavailable: pages say why, in full
        st.caption(f"Run engine unavailable: {str(exc).splitlines()[0][:200] if str(exc) else exc}")
page.run()
