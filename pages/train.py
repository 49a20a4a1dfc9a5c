import streamlit as st

st.title("Train")
st.info("Placeholder: this page is still being built.")
