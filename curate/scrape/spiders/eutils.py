"""PubMed through NCBI E-utilities: esearch pages of PMIDs, then efetch batches of citations."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

from curate.fetch.http import Request, Response
from curate.schema import ParsedDoc, Rejection
from curate.scrape.extract import finish_text
from curate.scrape.spiders.base import Item, Spider, register, rejections_as_items, xml_root

ESEARCH_CAP = 9_999  # PubMed's esearch returns at most this many PMIDs for one query


@register("eutils")
class EutilsSpider(Spider):
    """esearch (pages of PMIDs for `term`) -> efetch (batches of PubMed XML) -> one document per citation.

    discovery options: `term` (required), `retmax` (PMIDs per esearch page, default 500), `batch` (PMIDs per
    efetch, default 200), `max_results` (stop after this many PMIDs; esearch itself stops at 9,999),
    `tool`/`email` (NCBI asks clients to name themselves), `base` (the E-utilities URL).
    """

    def __init__(self, source):
        super().__init__(source)
        o = self.config.discovery.options
        self.base = o.get("base") or "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
        self.term: str = o["term"]
        self.retmax = int(o.get("retmax") or 500)
        self.batch = int(o.get("batch") or 200)
        self.max_results = int(o["max_results"]) if o.get("max_results") else None
        self.identity = f"&tool={quote_plus(o.get('tool') or 'curate')}"
        if o.get("email"):
            self.identity += f"&email={quote_plus(o['email'])}"

    def esearch_url(self, start: int) -> str:
        """The esearch URL for one page of PMIDs."""
        return (
            f"{self.base}esearch.fcgi?db=pubmed&term={quote_plus(self.term)}&retstart={start}"
            f"&retmax={self.retmax}&retmode=xml{self.identity}"
        )

    def start_requests(self) -> list[Request]:
        """The first esearch page."""
        return [Request(self.esearch_url(0), kind="esearch", meta={"start": 0})]

    @rejections_as_items
    def parse(self, response: Response) -> Iterator[Request | Item]:
        """esearch: efetch batches and the next page; efetch: citations."""
        if response.request.kind == "esearch":
            yield from self._esearch(response, xml_root(response))
        else:  # read citation by citation: one damaged citation must not cost the others
            yield from self._efetch(response)

    def _esearch(self, response: Response, root: Any) -> Iterator[Request | Item]:
        start = int(response.request.meta.get("start", 0))
        count = int(root.findtext("Count") or 0)
        ids = [i.strip() for i in root.xpath("//IdList/Id/text()")]
        if self.max_results is not None:
            ids = ids[: max(0, self.max_results - start)]
        for i in range(0, len(ids), self.batch):
            chunk = ids[i : i + self.batch]
            url = f"{self.base}efetch.fcgi?db=pubmed&id={','.join(chunk)}&retmode=xml{self.identity}"
            yield Request(url, kind="efetch")
        end = start + self.retmax
        if ids and end < count and (self.max_results is None or end < self.max_results):
            if end >= ESEARCH_CAP:
                # esearch refuses retstart past 9,998: say so instead of stopping silently.
                detail = f"{count} PMIDs match; esearch pages only {ESEARCH_CAP}: split the term by date"
                yield Item(response.url, rejection=Rejection("eutils_capped", detail))
            else:
                yield Request(self.esearch_url(end), kind="esearch", meta={"start": end})
        if not ids and start == 0:
            yield Item(
                response.url, rejection=Rejection("listing_empty", f"esearch found nothing for {self.term!r}")
            )

    def _efetch(self, response: Response) -> Iterator[Item]:
        from curate.parse.pubmed import Broken, NoPmid, PubmedRecord, iter_pubmed

        handle, path = tempfile.mkstemp(suffix=".xml", prefix="curate-efetch-")
        records: list = []
        try:
            with os.fdopen(handle, "wb") as fh:
                fh.write(response.body)
            records.extend(iter_pubmed(path))  # what was read before a cut is kept
        except Rejection as exc:
            records.append(exc)
        finally:
            os.unlink(path)
        for record in records:
            if isinstance(record, Rejection):
                yield Item(response.url, rejection=record)
            elif isinstance(record, Broken):  # one damaged citation: a row of its own, the rest go on
                where = f"{response.url}#element-{record.position}"
                if record.pmid:
                    where = f"https://pubmed.ncbi.nlm.nih.gov/{record.pmid}/"
                yield Item(where, rejection=Rejection(record.reason, record.detail))
            elif isinstance(record, NoPmid):
                detail = f"element {record.position} of the efetch answer has no PMID"
                where = f"{response.url}#element-{record.position}"
                yield Item(where, rejection=Rejection("pubmed_no_pmid", detail))
            elif isinstance(record, PubmedRecord):
                url = f"https://pubmed.ncbi.nlm.nih.gov/{record.pmid}/"
                if not record.abstract:
                    yield Item(url, rejection=Rejection("pubmed_no_abstract", f"PMID {record.pmid}"))
                    continue
                text = finish_text(record.text, self.rules)
                yield Item(url, doc=ParsedDoc(text=text, title=record.title or None, meta=record.meta))
