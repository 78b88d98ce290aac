"""Scraping: the crawl loop that drives a source's spider with the fetcher, the `scrape` stage, and checks."""

from curate.scrape.crawl import CrawlResult, crawl, record_id
from curate.scrape.stage import ScrapeStage

__all__ = ["CrawlResult", "ScrapeStage", "crawl", "record_id"]
