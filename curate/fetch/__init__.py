"""The one polite fetcher every scraper uses, and the state (WARC archive, frontier, cache) a crawl keeps."""

from curate.fetch.fetcher import USER_AGENT, Fetcher, FetchSettings
from curate.fetch.store import CrawlState, WarcArchive

__all__ = ["USER_AGENT", "CrawlState", "FetchSettings", "Fetcher", "WarcArchive"]
