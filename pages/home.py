import streamlit as st

st.title("pglab: a policy-gradient lab")
st.markdown(
    """
Train **REINFORCE**, its variance-reduction tricks (reward-to-go, baselines, GAE, critics),
**A2C**, **PPO** and **TRPO** on classic-control tasks, watch live diagnostics, and see *why*
one estimator learns faster than another.
"""
)
cols = st.columns(4)
cols[0].page_link("pages/train.py", label="Train", icon="🏋️")
cols[1].page_link("pages/compare.py", label="Compare", icon="📊")
cols[2].page_link("pages/gradient_lab.py", label="Gradient Lab", icon="🧪")
cols[3].page_link("pages/runs.py", label="Runs", icon="🗂️")
