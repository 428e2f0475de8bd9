"""QGIS GUI glue: registers the Processing provider, adds the SCL DeepLab menu, toolbar and compare dock."""
