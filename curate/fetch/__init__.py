"""The one polite fetcher every scraper uses, and the state (WARC archive, frontier, cache) a crawl keeps."""
