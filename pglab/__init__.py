"""pglab: a policy-gradient lab. The library behind the Streamlit pages and the CLI.

Data flows one way: config -> rollout -> estimator -> update -> metrics -> store -> plots.
"""

__version__ = "0.1.0"
