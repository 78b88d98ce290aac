"""Scraping, as Scrapy layers it: curate.fetch (Request, Response, the fetcher) at the bottom, then the crawl
loop (crawl.py) and extraction (extract.py), the spiders (spiders/, one site per module), and the `scrape`
stage and `sources check` on top."""
