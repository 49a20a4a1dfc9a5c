import streamlit as st

st.title("Compare")
st.info("Placeholder: this page is still being built.")
