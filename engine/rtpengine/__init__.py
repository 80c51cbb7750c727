"""RTPEngine ng protocol: ``ng`` (pure core), ``client`` (asyncio UDP driver)."""
