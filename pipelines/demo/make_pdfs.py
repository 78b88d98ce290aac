"""Generate the demo's sample PDFs: three fictitious medical articles and three files the parser must reject.

    .venv/bin/python pipelines/demo/make_pdfs.py [OUTDIR]     (default: pipelines/demo/pdf next to this file)

Every article, author, journal, trial and reference below is invented for the demo: none of it is medical
advice or copied from a publication. The output is byte-for-byte the same on every run (fixed metadata dates,
no random file IDs), so the demo's results are reproducible; rerunning overwrites the files.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymupdf

DEFAULT_OUT = Path(__file__).resolve().parent / "pdf"

# Fixed metadata: a new date or producer string on every run would change the bytes.
_METADATA = {
    "creationDate": "D:20240315120000Z",
    "modDate": "D:20240315120000Z",
    "creator": "curate pipelines/demo/make_pdfs.py",
    "producer": "PyMuPDF",
    "subject": "Fictitious article generated for the curate demo; not medical advice.",
}
_SAVE = {"garbage": 3, "deflate": True, "no_new_id": True}  # no_new_id: MuPDF would add a random /ID

PAGE_W, PAGE_H = 612.0, 792.0  # US Letter
MARGIN_X, TOP, BOTTOM = 54.0, 72.0, 728.0
GUTTER = 20.0

BODY, BOLD, ITALIC, SANS, SANS_BOLD = "tiro", "tibo", "tiit", "helv", "hebo"  # PDF base-14 fonts

JOURNAL = "Journal of Cardiovascular Practice"
CARDIO_TITLE = (
    "Nurse-Led Remote Monitoring After Hospitalization for Heart Failure: A Randomized Controlled Trial"
)
SEPSIS_TITLE = "Early Recognition and Management of Sepsis in Adults: A Narrative Review"
ASTHMA_TITLE = "Stepwise Management of Persistent Asthma in Adolescents and Adults"


# ------------------------------------------------------------------------------------------------ layout


@dataclass
class Frame:
    """A rectangle of a page that text is poured into (a column, or the whole text area)."""

    page: pymupdf.Page
    rect: pymupdf.Rect


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy line breaking; a "~" inside a word marks where it may be hyphenated at a line end."""
    lines: list[str] = []
    line = ""

    def fits(candidate: str) -> bool:
        return pymupdf.get_text_length(candidate, fontname=font, fontsize=size) <= width

    for word in text.split():
        whole = word.replace("~", "")
        candidate = f"{line} {whole}" if line else whole
        if fits(candidate):
            line = candidate
            continue
        parts = word.split("~")
        for cut in range(len(parts) - 1, 0, -1):
            head = "".join(parts[:cut]) + "-"
            if line and fits(f"{line} {head}"):
                lines.append(f"{line} {head}")
                line = "".join(parts[cut:])
                break
        else:
            if line:
                lines.append(line)
            line = whole
    if line:
        lines.append(line)
    return lines


class Flow:
    """Pours headings and paragraphs into a sequence of frames, moving on when one is full."""

    def __init__(self, frames: Iterator[Frame]):
        self._frames = frames
        self._next()

    def _next(self) -> None:
        self.frame = next(self._frames)
        self.y = self.frame.rect.y0

    def _room(self, height: float) -> bool:
        return self.y + height <= self.frame.rect.y1

    def block(
        self,
        text: str,
        *,
        font: str = BODY,
        size: float = 10.5,
        after: float = 7.0,
        keep_with_next: bool = False,
    ) -> None:
        """Set one paragraph (or heading) in the current frame, continuing in the next frames."""
        leading = size * 1.25
        lines = wrap(text, font, size, self.frame.rect.width)
        # A heading at the foot of a column would be separated from its text: start it in the next frame.
        if keep_with_next and not self._room(leading * 3) and self.y > self.frame.rect.y0:
            self._next()
        for line in lines:
            if not self._room(leading):
                self._next()
            baseline = self.y + size
            self.frame.page.insert_text((self.frame.rect.x0, baseline), line, fontname=font, fontsize=size)
            self.y += leading
        self.y += after

    def heading(self, text: str, size: float = 12.0) -> None:
        """A bold section heading kept with the paragraph that follows it."""
        self.y += 4.0
        self.block(text, font=BOLD, size=size, after=3.0, keep_with_next=True)


def new_page(doc: pymupdf.Document, header: str | None, footer: str | None) -> pymupdf.Page:
    """A page with a running header (top margin) and the page number and footer (bottom margin)."""
    page = doc.new_page(width=PAGE_W, height=PAGE_H)
    number = doc.page_count
    if header:
        page.insert_text((MARGIN_X, 44), header, fontname=SANS, fontsize=8.5)
        page.draw_line((MARGIN_X, 50), (PAGE_W - MARGIN_X, 50), width=0.5)
    if footer:
        page.insert_text((MARGIN_X, PAGE_H - 36), footer, fontname=SANS, fontsize=8)
    label = str(number)
    width = pymupdf.get_text_length(label, fontname=SANS, fontsize=9)
    page.insert_text(((PAGE_W - width) / 2, PAGE_H - 48), label, fontname=SANS, fontsize=9)
    return page


def full_width(page: pymupdf.Page, y: float, text: str, *, font: str, size: float, after: float) -> float:
    """Set text across the whole text width from y; return the y below it."""
    leading = size * 1.25
    for line in wrap(text, font, size, PAGE_W - 2 * MARGIN_X):
        page.insert_text((MARGIN_X, y + size), line, fontname=font, fontsize=size)
        y += leading
    return y + after


def finish(doc: pymupdf.Document, path: Path, title: str) -> Path:
    """Fixed metadata, then a deterministic save."""
    doc.set_metadata({**_METADATA, "title": title, "author": "curate demo"})
    path.write_bytes(doc.tobytes(**_SAVE))
    doc.close()
    return path


# ------------------------------------------------------------------------------------------------ texts

CARDIO_AUTHORS = "Maren Holt, Daniel Okafor, Lucia Ferrante, Arjun Mehta"
CARDIO_AFFILIATION = "Department of Cardiology, Northfield University Hospital, Northfield"
CARDIO_DOI = "10.5555/jcp.2024.0117"

CARDIO_ABSTRACT = (
    "Background: Readmission within the first months after a hospital stay for heart failure remains common, "
    "and many readmissions follow weight gain and symptoms that could have been noticed earlier. "
    "Methods: In this single-centre randomized trial, 312 adults discharged after decompensated heart "
    "failure were assigned to a nurse-led remote monitoring programme or to usual care. Patients in the "
    "programme reported weight, blood pressure and symptoms each morning through a tablet, and a heart "
    "failure nurse reviewed the readings every weekday and called when predefined thresholds were crossed. "
    "The primary outcome was readmission for heart failure within 180 days. Results: The primary outcome "
    "occurred in 29 of 157 patients (18.5%) in the monitoring group and in 44 of 155 patients (28.4%) in the "
    "usual care group (hazard ratio 0.62; 95% confidence interval 0.39 to 0.98). Conclusions: A simple "
    "nurse-led monitoring programme reduced readmissions for heart failure in the six months after discharge."
)

CARDIO_BODY: list[tuple[str, str]] = [
    ("h", "Introduction"),
    (
        "p",
        "Heart failure is one of the most frequent reasons for hospital admission in older adults, and the "
        "weeks after discharge are a period of particular vulnerability. Diuretic doses are often changed "
        "during the stay, kidney function may still be recovering, and patients must learn to recognise "
        "early signs of fluid retention at the same time as they adjust to new medicines. In our region, "
        "about one in four patients discharged with heart failure is admitted again for the same condition "
        "within six months.",
    ),
    (
        "p",
        "Remote monitoring has been proposed as a way to detect deterioration before it becomes an "
        "emergency. Earlier programmes relied on implanted devices or on complex telemedicine platforms, and "
        "their results have been mixed. We reasoned that the decisive element is not the technology but the "
        "speed with which a clinician acts on a warning sign. We therefore designed a deliberately simple "
        "programme, run by the existing heart failure nursing team, and tested it in a randomized trial.",
    ),
    ("h", "Methods"),
    (
        "p",
        "We enrolled adults aged 18 years or older who were discharged home after a hospital stay in which "
        "heart failure was the main diagnosis, regardless of ejection fraction. Patients were excluded if "
        "they were expected to move to long-term residential care, were receiving dialysis, or were unable "
        "to use a tablet even with help from a relative. All participants gave written informed consent, and "
        "the protocol was approved by the institutional ethics committee.",
    ),
    (
        "p",
        "Participants were randomly assigned in a one-to-one ratio, in blocks of varying size, to the "
        "monitoring programme or to usual care. Patients in the programme received a tablet, a bathroom "
        "scale and an automated blood pressure cuff. Each morning they entered their weight, blood pressure, "
        "heart rate and a short symptom score. A nurse reviewed all readings every weekday before noon and "
        "telephoned the patient whenever weight rose by more than two kilograms in three days or the symptom "
        "score worsened. During the call the nurse could adjust the diuretic dose according to a written "
        "protocol, arrange a clinic visit within two days, or contact the cardiologist on duty.",
    ),
    (
        "p",
        "The primary outcome was the first readmission for heart failure within 180 days after discharge, "
        "adjudicated by two cardiologists who were unaware of the group assignment. Secondary outcomes "
        "included death from any cause, the number of days alive and out of hospital, and quality of life "
        "measured with a standard questionnaire at six months. Outcomes were compared with Cox proportional "
        "hazards models, and all analyses followed the intention-to-treat principle.",
    ),
    ("h", "Results"),
    (
        "p",
        "Between March 2021 and September 2022, 312 patients underwent randomization; 157 were assigned to "
        "the monitoring programme and 155 to usual care. The mean age was 74 years, 41% of the patients were "
        "women, and 38% had a reduced ejection fraction. Adherence to daily reporting was high: patients in "
        "the programme submitted readings on a median of 91% of days.",
    ),
    (
        "p",
        "Readmission for heart failure within 180 days occurred in 29 patients (18.5%) in the monitoring "
        "group and in 44 patients (28.4%) in the usual care group. Nurses made a median of six calls per "
        "patient, and most calls led to a temporary increase in the diuretic dose. Death from any cause "
        "occurred in 11 and 14 patients, respectively. Patients in the programme spent on average nine more "
        "days alive and out of hospital, and their quality of life scores at six months were modestly "
        "better. No serious adverse events were attributed to the protocol-driven changes in diuretic dose.",
    ),
    ("h", "Discussion"),
    (
        "p",
        "In this randomized trial, a nurse-led remote monitoring programme reduced readmissions for heart "
        "failure by about one third during the six months after discharge. The programme used inexpensive "
        "equipment and the existing nursing team, which suggests that it could be adopted by other hospitals "
        "without large investments.",
    ),
    (
        "p",
        "The effect appeared to depend on prompt action rather than on the measurements themselves. Most "
        "readmissions that were prevented followed a rise in weight that was treated by a short increase in "
        "diuretic dose within a day of the warning sign. This finding is consistent with the view that "
        "congestion builds up over several days before symptoms force a patient to seek emergency care.",
    ),
    (
        "p",
        "Our study has limitations. It was conducted at a single centre with an experienced heart failure "
        "team, patients who could not use a tablet were excluded, and the trial was not large enough to "
        "detect an effect on mortality. Larger multicentre trials should test whether the benefit persists "
        "beyond six months and in settings with fewer specialised nurses.",
    ),
    ("h", "Conclusion"),
    (
        "p",
        "Daily remote reporting of weight and symptoms, reviewed by heart failure nurses who can adjust "
        "diuretic treatment, reduced readmissions after a hospital stay for heart failure.",
    ),
]

CARDIO_REFERENCES = [
    "1. Ostrowski K, Lindqvist E. Readmission after heart failure hospitalisation in a regional cohort. "
    "Northern Cardiology Reports. 2019;7:112-120.",
    "2. Abernathy J, Sato R. Telemonitoring programmes for chronic heart failure: a review of trials. "
    "Clinical Care Quarterly. 2020;15:45-58.",
    "3. Mwangi P, Carvalho T. Diuretic titration protocols led by nurses. Heart Nursing Today. 2018;3:9-17.",
    "4. Delacroix M, Brandt H. Weight monitoring as an early warning of congestion. Journal of Clinical "
    "Practice Methods. 2021;22:301-309.",
]

SEPSIS_BODY: list[tuple[str, str]] = [
    (
        "p",
        "Sepsis is a life-threatening organ dysfunction caused by a dysregulated host response to "
        "infection. It remains a leading cause of death in hospitals, and survivors often live with lasting "
        "physical and cognitive impairment. Because the outcome depends strongly on the first hours of care, "
        "this review summarises practical steps for recognising sepsis early and starting treatment without "
        "delay on general wards and in emergency departments.",
    ),
    ("h", "Recognition"),
    (
        "p",
        "No single sign identifies sepsis. A raised respiratory rate, new confusion and low blood pressure "
        "are simple bedside findings that should prompt a structured assessment in any patient with a "
        "suspected infection. Early warning scores that combine vital signs help nurses to escalate care, "
        "but they must not replace clinical judgement. Serum lactate adds information about tissue "
        "perfusion, and a value above two millimoles per litre identifies patients at higher risk even when "
        "the blood pressure is still normal.",
    ),
    (
        "p",
        "Clinicians should actively look for the source of infection. The chest, urinary tract, abdomen and "
        "skin account for most cases, and a careful examination together with a few targeted tests is "
        "usually more useful than extensive imaging. Blood cultures should be taken before antibiotics "
        "whenever this does not delay treatment.",
    ),
    ("h", "Initial management"),
    (
        "p",
        "Broad-spectrum antimicrobial therapy should begin within one hour when septic shock is likely, and "
        "within three hours when sepsis is possible but the diagnosis is still uncertain. The choice of "
        "drugs depends on the suspected source, local resistance patterns and recent antibiotic exposure, "
        "and it should be reviewed daily so that treatment can be narrowed when culture results arrive. "
        "Fluid resusci~tation with balanced crystalloid solutions is the first measure for patients with "
        "hypotension or a raised lactate. An initial volume of about 30 millilitres per kilogram is commonly "
        "given over the first three hours, followed by smaller boluses guided by repeated assessment of the "
        "circulation.",
    ),
    (
        "p",
        "When blood pressure remains low despite fluids, vasopressors are required, and noradrenaline is the "
        "usual first choice. A mean arterial pressure of about 65 millimetres of mercury is a reasonable "
        "initial target for most adults. Patients who need vasopressors should be cared for in a high "
        "dependency or intensive care unit, where invasive monitoring is available.",
    ),
    ("h", "Source control and ongoing care"),
    (
        "p",
        "Drainage of an abscess, removal of an infected device or surgery for a perforated viscus should be "
        "carried out as soon as it is safe to do so. Afterwards, care focuses on supporting failing organs, "
        "preventing complications such as venous thrombosis and pressure injury, and planning early "
        "mobilisation. Survivors benefit from follow-up that addresses weakness, fatigue, memory problems "
        "and low mood after discharge.",
    ),
    ("h", "Conclusion"),
    (
        "p",
        "Early recognition, prompt antimicrobial therapy, careful fluid resuscitation and timely source "
        "control remain the foundations of sepsis care. Hospitals should train staff to escalate concerns "
        "quickly and audit the time from recognition to treatment.",
    ),
]

SEPSIS_REFERENCES = [
    "1. Halvorsen B, Quist A. Bedside signs in the first hour of sepsis. Acute Medicine Letters. "
    "2017;4:88-95.",
    "2. Nakamura T, Oyelaran F. Lactate as a marker of hypoperfusion. Critical Care Practice. 2019;11:201-9.",
    "3. Fairbairn C, Ruiz D. Timing of antibiotics in suspected infection. Emergency Care Review. "
    "2021;9:14-26.",
]

ASTHMA_INTRO = (
    "This guideline summarises recommendations for the long-term management of persistent asthma in "
    "adolescents aged 12 years and older and in adults. It was prepared by a fictitious working group of "
    "respiratory physicians, general practitioners, nurses and pharmacists for the curate demonstration "
    "corpus, and it is not intended for clinical use. Each recommendation reflects a balance between "
    "symptom control, the risk of severe attacks and the burden of treatment."
)

ASTHMA_RECOMMENDATIONS = [
    "1. Confirm the diagnosis with objective tests of airflow limitation, such as spirometry with a "
    "bronchodilator response or serial peak flow measurements, before starting long-term treatment.",
    "2. Offer every patient with persistent asthma an inhaled corticosteroid, because regular "
    "anti-inflammatory treatment reduces the risk of severe attacks and of death from asthma.",
    "3. Use the lowest dose of inhaled corticosteroid that maintains good control, and review the dose "
    "every three months once symptoms have been stable.",
    "4. Check inhaler technique and adherence at every visit before increasing treatment, since poor "
    "technique is a frequent cause of apparently uncontrolled asthma.",
    "5. Provide a written personal action plan that explains how to recognise worsening asthma, how to "
    "adjust treatment and when to seek urgent medical help.",
    "6. Ask about smoking, occupational exposures and allergen triggers, and support patients in reducing "
    "exposures that can be avoided.",
    "7. Refer patients to a specialist asthma service when control remains poor despite moderate-dose "
    "treatment with good adherence, or after any life-threatening attack.",
    "8. Offer annual influenza vaccination and review vaccination status at least once a year.",
]

ASTHMA_CLOSING = (
    "Implementation of these recommendations should be audited locally. Useful measures include the "
    "proportion of patients with a written action plan, the number of courses of oral corticosteroids per "
    "patient each year, and the proportion of patients whose inhaler technique was checked during the past "
    "twelve months. The working group will review this guideline when new evidence becomes available."
)

SCANNED_LETTER = [
    "Northfield General Practice",
    "12 March 2024",
    "Dear Colleague,",
    "Thank you for seeing Mr J. Example, aged 67, who reports",
    "increasing breathlessness on exertion over three months.",
    "He has mild ankle swelling and his weight has risen by",
    "four kilograms. I would be grateful for your assessment.",
    "Yours sincerely, Dr A. Sample",
]

LOCKED_REPORT = [
    "Confidential pathology report",
    "Specimen: skin biopsy, left forearm (fictitious demo record).",
    "Microscopy: benign intradermal naevus. Margins clear.",
    "This file is encrypted with a user password for the curate demo.",
]
LOCKED_USER_PASSWORD = "demo-user"
LOCKED_OWNER_PASSWORD = "demo-owner"


# ------------------------------------------------------------------------------------------------ files


def cardiology_trial(path: Path) -> Path:
    """Two-column article: full-width title and abstract, running header, page numbers, references."""
    doc = pymupdf.open()
    header = f"{JOURNAL}  |  Volume 12  |  2024"
    footer = "Fictitious article generated for the curate demo"
    first = new_page(doc, header, footer)
    y = full_width(first, TOP, "ORIGINAL RESEARCH", font=SANS_BOLD, size=9, after=8)
    y = full_width(first, y, CARDIO_TITLE, font=BOLD, size=17, after=8)
    y = full_width(first, y, CARDIO_AUTHORS, font=BODY, size=11, after=2)
    y = full_width(first, y, CARDIO_AFFILIATION, font=ITALIC, size=9.5, after=2)
    y = full_width(first, y, f"doi:{CARDIO_DOI}", font=BODY, size=9.5, after=10)
    y = full_width(first, y, "Abstract", font=BOLD, size=11, after=2)
    y = full_width(first, y, CARDIO_ABSTRACT, font=BODY, size=9.5, after=14)

    column = (PAGE_W - 2 * MARGIN_X - GUTTER) / 2

    def columns(page: pymupdf.Page, top: float) -> Iterator[Frame]:
        yield Frame(page, pymupdf.Rect(MARGIN_X, top, MARGIN_X + column, BOTTOM))
        yield Frame(page, pymupdf.Rect(PAGE_W - MARGIN_X - column, top, PAGE_W - MARGIN_X, BOTTOM))

    def frames() -> Iterator[Frame]:
        yield from columns(first, y)
        while True:
            yield from columns(new_page(doc, header, footer), TOP)

    flow = Flow(frames())
    for kind, text in CARDIO_BODY:
        if kind == "h":
            flow.heading(text)
        else:
            flow.block(text)
    flow.heading("References")
    for ref in CARDIO_REFERENCES:
        flow.block(ref, size=8.5, after=3)
    return finish(doc, path, CARDIO_TITLE)


def _single_column(doc: pymupdf.Document, header: str | None, footer: str | None) -> Iterator[Frame]:
    while True:
        page = new_page(doc, header, footer)
        yield Frame(page, pymupdf.Rect(MARGIN_X + 18, TOP, PAGE_W - MARGIN_X - 18, BOTTOM))


def sepsis_review(path: Path) -> Path:
    """Two-page single-column review with a word hyphenated at a line end and a References section."""
    doc = pymupdf.open()
    flow = Flow(_single_column(doc, "Acute Care Reviews  |  Narrative review", None))
    flow.block("NARRATIVE REVIEW", font=SANS_BOLD, size=9, after=6)
    flow.block(SEPSIS_TITLE, font=BOLD, size=16, after=6)
    flow.block("Ingrid Solberg, Tomas Reyes", size=11, after=14)
    for kind, text in SEPSIS_BODY:
        if kind == "h":
            flow.heading(text)
        else:
            flow.block(text, size=11.5)
    flow.heading("References")
    for ref in SEPSIS_REFERENCES:
        flow.block(ref, size=9, after=3)
    # No metadata title: the parser must find the title from the largest font on page 1.
    return finish(doc, path, "")


def asthma_guideline(path: Path) -> Path:
    """Single-column guideline with numbered recommendations."""
    doc = pymupdf.open()
    flow = Flow(_single_column(doc, None, None))
    flow.block("CLINICAL PRACTICE GUIDELINE", font=SANS_BOLD, size=9, after=6)
    flow.block(ASTHMA_TITLE, font=BOLD, size=16, after=4)
    flow.block("Demonstration Working Group on Respiratory Care, 2024", font=ITALIC, size=10, after=12)
    flow.heading("Scope")
    flow.block(ASTHMA_INTRO, size=11)
    flow.heading("Recommendations")
    for rec in ASTHMA_RECOMMENDATIONS:
        flow.block(rec, size=11, after=5)
    flow.heading("Implementation and audit")
    flow.block(ASTHMA_CLOSING, size=11)
    # A word processor's file name as the title, as many real PDFs carry: the parser must not trust it.
    return finish(doc, path, "Microsoft Word - asthma_guideline_v3.docx")


def scanned_letter(path: Path) -> Path:
    """A page that is only an image of text (a scan): no text layer, so the pdf stage reads it by OCR."""
    with pymupdf.open() as source:
        page = source.new_page(width=PAGE_W / 2, height=PAGE_H / 3)
        y = 30.0
        for line in SCANNED_LETTER:
            page.insert_text((24, y), line, fontname=BODY, fontsize=10)
            y += 15
        pixmap = page.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY)
    doc = pymupdf.open()
    page = doc.new_page(width=PAGE_W, height=PAGE_H)
    page.insert_image(pymupdf.Rect(40, 40, PAGE_W - 40, 40 + (PAGE_W - 80) * 2 / 3), pixmap=pixmap)
    return finish(doc, path, "Scanned referral letter")


def locked_report(path: Path) -> Path:
    """A one-page PDF encrypted with a user password (RC4 128-bit, written by hand: see _encrypted_pdf)."""
    path.write_bytes(_encrypted_pdf(LOCKED_REPORT, LOCKED_USER_PASSWORD, LOCKED_OWNER_PASSWORD))
    return path


def truncated(path: Path, valid: bytes) -> Path:
    """The first 300 bytes of a valid PDF: a download cut short."""
    path.write_bytes(valid[:300])
    return path


# MuPDF draws a random file ID whenever it encrypts, so its encrypted output differs on every run. The
# PDF standard security handler (revision 3, RC4 128-bit) is short enough to apply here with a fixed ID.
_PASSWORD_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
_FILE_ID = hashlib.md5(b"curate demo locked-report").digest()
_PERMISSIONS = -3904  # print and copy off, as a locked report would be


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def _rc4_rounds(key: bytes, data: bytes) -> bytes:
    """RC4 applied 20 times with the key XORed with 0..19 (revision 3's strengthening)."""
    for i in range(20):
        data = _rc4(bytes(k ^ i for k in key), data)
    return data


def _pad(password: str) -> bytes:
    return (password.encode("latin-1") + _PASSWORD_PAD)[:32]


def _encrypted_pdf(lines: list[str], user_pw: str, owner_pw: str) -> bytes:
    """A minimal one-page PDF with its strings and streams encrypted (PDF 1.7, section 7.6.3)."""
    owner_key = hashlib.md5(_pad(owner_pw)).digest()
    for _ in range(50):
        owner_key = hashlib.md5(owner_key).digest()
    o_value = _rc4_rounds(owner_key, _pad(user_pw))
    key = hashlib.md5(_pad(user_pw) + o_value + struct.pack("<i", _PERMISSIONS) + _FILE_ID).digest()
    for _ in range(50):
        key = hashlib.md5(key).digest()
    u_value = _rc4_rounds(key, hashlib.md5(_PASSWORD_PAD + _FILE_ID).digest()) + bytes(16)

    def seal(number: int, data: bytes) -> bytes:
        object_key = hashlib.md5(key + struct.pack("<i", number)[:3] + b"\x00\x00").digest()
        return _rc4(object_key, data)

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 16 TL 72 720 Td " + " ".join(f"({escape(t)}) ' " for t in lines) + "ET"
    stream = seal(4, content.encode("latin-1"))
    title = seal(6, b"Confidential pathology report").hex().upper()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title <" + title.encode() + b"> >>",
        b"<< /Filter /Standard /V 2 /R 3 /Length 128 /P %d /O <%s> /U <%s> >>"
        % (_PERMISSIONS, o_value.hex().upper().encode(), u_value.hex().upper().encode()),
    ]
    file_id = _FILE_ID.hex().upper().encode()
    trailer = b"/Info 6 0 R /Encrypt 7 0 R /ID [<%s> <%s>]" % (file_id, file_id)
    return pdf_file(objects, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", trailer)


def pdf_file(objects: list[bytes], header: bytes = b"%PDF-1.4\n", trailer: bytes = b"") -> bytes:
    """A PDF file from numbered object bodies (object 1 is the catalog), with a correct xref table."""
    out = bytearray(header)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s >>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def make_demo_pdfs(out_dir: Path) -> list[Path]:
    """Write the six demo PDFs into out_dir (created if needed, files overwritten); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        cardiology_trial(out_dir / "cardiology-trial.pdf"),
        sepsis_review(out_dir / "sepsis-review.pdf"),
        asthma_guideline(out_dir / "asthma-guideline.pdf"),
        scanned_letter(out_dir / "scanned-letter.pdf"),
        locked_report(out_dir / "locked-report.pdf"),
    ]
    written.append(truncated(out_dir / "truncated.pdf", written[1].read_bytes()))
    return written


def main(argv: list[str]) -> int:
    """Command line: make_pdfs.py [OUTDIR]."""
    out_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    for path in make_demo_pdfs(out_dir):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
