import streamlit as st

st.title("Runs")
st.info("Placeholder: this page is still being built.")
