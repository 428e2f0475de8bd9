"""How well a prediction agrees with a reference: metrics, the report, figures and the patches preview."""
