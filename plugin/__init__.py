"""QGIS GUI glue: registers the Processing provider."""
