"""mtsim: a MetaTrader terminal and trade-server simulator speaking mtgate protocol v1."""
