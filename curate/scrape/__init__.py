"""Scraping, as Scrapy layers it: curate.fetch (Request, Response, the fetcher) at the bottom, then the crawl
loop (crawl.py) and extraction (extract.py), the spiders (spiders/, one site per module), and the `scrape`
stage and `sources check` on top."""

from curate.scrape.crawl import CrawlResult, crawl, record_id
from curate.scrape.stage import ScrapeStage

__all__ = ["CrawlResult", "ScrapeStage", "crawl", "record_id"]
