import streamlit as st

st.title("Gradient_lab")
st.info("Placeholder: this page is still being built.")
