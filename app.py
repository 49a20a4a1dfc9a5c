"""pglab entry point and router: `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="pglab - policy-gradient lab", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/compare.py", title="Compare", icon="📊"),
    st.Page("pages/gradient_lab.py", title="Gradient Lab", icon="🧪"),
    st.Page("pages/runs.py", title="Runs", icon="🗂️"),
]

st.navigation(PAGES).run()
