//! Biomarkers: what each one is called in the answer and how a report states it.
//!
//! Every narrative phrasing contains every word of the answer it stands for, so
//! the extraction is recoverable from the text while the wording still varies.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::vocabulary::one;

/// How a marker's value is stated.
pub(crate) enum MarkerDef {
    /// A fixed finding, e.g. "ER positive".
    Status {
        answer: &'static str,
        phrasings: &'static [&'static str],
    },
    /// A value from a list; `{v}` in the answer and phrasings is replaced by it.
    Valued {
        answer: &'static str,
        values: &'static [&'static str],
        phrasings: &'static [&'static str],
    },
    /// A serum level drawn from a range, stated as "NAME VALUE UNIT".
    Serum {
        name: &'static str,
        long: Option<&'static str>,
        unit: &'static str,
        low: u32,
        high: u32,
        tenths: bool,
    },
}

/// A drawn marker: the answer item and the narrative words for it.
#[derive(Debug, Clone)]
pub(crate) struct MarkerValue {
    pub answer: String,
    pub phrase: String,
    /// A level measured in blood rather than on tissue; reports state these apart.
    pub serum: bool,
}

const fn status(answer: &'static str, phrasings: &'static [&'static str]) -> MarkerDef {
    MarkerDef::Status { answer, phrasings }
}

const fn serum(
    name: &'static str,
    long: Option<&'static str>,
    unit: &'static str,
    low: u32,
    high: u32,
    tenths: bool,
) -> MarkerDef {
    MarkerDef::Serum {
        name,
        long,
        unit,
        low,
        high,
        tenths,
    }
}

const PERCENTS: &[&str] = &[
    "5", "10", "15", "20", "25", "30", "40", "50", "60", "70", "80", "90",
];

/// Every marker the tables may name, by key; one per line, so kept out of rustfmt.
#[rustfmt::skip]
pub(crate) static MARKERS: &[(&str, MarkerDef)] = &[
    ("tps", MarkerDef::Valued { answer: "PD-L1 {v}%", values: &["<1", "1", "2", "5", "10", "15", "20", "30", "40", "50", "60", "70", "80", "90", "95"], phrasings: &["PD-L1 {v}%", "PD-L1 tumor proportion score {v}%", "PD-L1 TPS {v}%", "PD-L1 expression of {v}% by IHC", "PD-L1 {v}% (22C3)"] }),
    ("cps", MarkerDef::Valued { answer: "PD-L1 CPS {v}", values: &["1", "3", "5", "8", "10", "12", "15", "20", "30", "50", "60", "80"], phrasings: &["PD-L1 CPS {v}", "PD-L1 combined positive score (CPS) {v}", "PD-L1 CPS of {v}"] }),
    ("ki67", MarkerDef::Valued { answer: "Ki-67 {v}%", values: PERCENTS, phrasings: &["Ki-67 {v}%", "Ki-67 proliferation index {v}%", "Ki-67 index of {v}%"] }),
    ("blasts", MarkerDef::Valued { answer: "bone marrow blasts {v}%", values: &["22", "28", "35", "40", "45", "52", "60", "68", "75", "84", "90"], phrasings: &["bone marrow blasts {v}%", "{v}% blasts in the bone marrow", "bone marrow with {v}% blasts"] }),
    ("bcr-abl", MarkerDef::Valued { answer: "BCR-ABL1 transcripts {v}% IS", values: &["12", "25", "38", "45", "60", "72", "85"], phrasings: &["BCR-ABL1 transcripts {v}% IS", "BCR-ABL1 transcripts at {v}% on the international scale (IS)"] }),
    ("tmb-high", status("TMB-high", &["TMB-high", "high tumor mutational burden (TMB-high)", "TMB-high (18 mutations/Mb)", "TMB-high at 14 mut/Mb"])),
    ("tmb-low", status("TMB-low", &["TMB-low", "TMB-low (3 mutations/Mb)", "low tumor mutational burden (TMB-low)"])),
    ("msi-h", status("MSI-H", &["MSI-H", "microsatellite instability-high (MSI-H)", "MSI-H by PCR"])),
    ("mss", status("MSS", &["MSS", "microsatellite stable (MSS)", "MSS by PCR"])),
    ("dmmr", status("dMMR", &["dMMR", "mismatch repair deficient (dMMR) with loss of MLH1 and PMS2", "dMMR (loss of MSH2/MSH6 staining)"])),
    ("pmmr", status("pMMR", &["pMMR", "mismatch repair proficient (pMMR)", "pMMR with intact MMR protein expression"])),
    ("er+", status("ER positive", &["ER positive", "ER positive (90%)", "ER-positive", "estrogen receptor (ER) positive", "ER positive (95%, strong)"])),
    ("er-", status("ER negative", &["ER negative", "ER-negative", "estrogen receptor (ER) negative", "ER negative (0%)"])),
    ("pr+", status("PR positive", &["PR positive", "PR positive (60%)", "PR-positive", "progesterone receptor (PR) positive"])),
    ("pr-", status("PR negative", &["PR negative", "PR-negative", "progesterone receptor (PR) negative", "PR negative (<1%)"])),
    ("her2+", status("HER2 positive", &["HER2 positive", "HER2 positive (IHC 3+)", "HER2-positive by FISH", "HER2 positive (ISH amplified)"])),
    ("her2-", status("HER2 negative", &["HER2 negative", "HER2 negative (IHC 0)", "HER2-negative by FISH"])),
    ("her2-low", status("HER2-low", &["HER2-low", "HER2-low (IHC 1+)", "HER2-low (IHC 2+, ISH not amplified)"])),
    ("mgmt-m", status("MGMT promoter methylated", &["MGMT promoter methylated", "methylated MGMT promoter", "MGMT promoter methylated by PCR"])),
    ("mgmt-u", status("MGMT promoter unmethylated", &["MGMT promoter unmethylated", "unmethylated MGMT promoter"])),
    ("cd20", status("CD20 positive", &["CD20 positive", "CD20-positive by IHC", "diffusely CD20 positive"])),
    ("cd30", status("CD30 positive", &["CD30 positive", "CD30-positive Reed-Sternberg cells"])),
    ("cd15", status("CD15 positive", &["CD15 positive", "CD15-positive"])),
    ("cd19", status("CD19 positive", &["CD19 positive", "CD19-positive blasts"])),
    ("cd33", status("CD33 positive", &["CD33 positive", "CD33-positive blasts"])),
    ("cd117", status("CD117 positive", &["CD117 positive", "CD117 (KIT) positive"])),
    ("dog1", status("DOG1 positive", &["DOG1 positive", "DOG1-positive"])),
    ("bcl2", status("BCL2 positive", &["BCL2 positive", "BCL2 protein positive by IHC"])),
    ("sox11", status("SOX11 positive", &["SOX11 positive", "SOX11-positive"])),
    ("cyclin-d1", status("cyclin D1 positive", &["cyclin D1 positive", "cyclin D1-positive by IHC"])),
    ("p16", status("p16 positive", &["p16 positive", "p16-positive by IHC", "strong diffuse p16 positive"])),
    ("p16-neg", status("p16 negative", &["p16 negative", "p16-negative by IHC"])),
    ("hpv", status("HPV positive", &["HPV positive", "HPV positive (HPV-16)", "HPV-positive by ISH"])),
    ("hpv-neg", status("HPV negative", &["HPV negative", "HPV-negative by ISH"])),
    ("hrd", status("HRD positive", &["HRD positive", "HRD positive (genomic instability score 58)", "homologous recombination deficiency (HRD) positive"])),
    ("hrp", status("HRD negative", &["HRD negative", "homologous recombination deficiency (HRD) negative"])),
    ("ighv-u", status("IGHV unmutated", &["IGHV unmutated", "unmutated IGHV"])),
    ("ighv-m", status("IGHV mutated", &["IGHV mutated", "mutated IGHV"])),
    ("cldn", status("claudin 18.2 positive", &["claudin 18.2 positive", "claudin 18.2 positive (80% of tumor cells)"])),
    ("sstr", status("somatostatin receptor positive", &["somatostatin receptor positive", "somatostatin receptor positive on DOTATATE PET"])),
    ("psma", status("PSMA positive", &["PSMA positive", "PSMA positive on PET", "PSMA-positive"])),
    ("calretinin", status("calretinin positive", &["calretinin positive", "calretinin-positive"])),
    ("wt1", status("WT1 positive", &["WT1 positive", "WT1-positive"])),
    ("p53-abn", status("p53 abnormal", &["p53 abnormal", "p53 abnormal (mutant-pattern) staining"])),
    ("p53-wt", status("p53 wild-type", &["p53 wild-type", "p53 wild-type staining pattern"])),
    ("1p19q", status("1p/19q codeleted", &["1p/19q codeleted", "1p/19q codeleted by FISH"])),
    ("1p19q-intact", status("1p/19q intact", &["1p/19q intact", "1p/19q intact by FISH"])),
    ("dll3", status("DLL3 positive", &["DLL3 positive", "DLL3-positive by IHC"])),
    ("ebv", status("EBV positive", &["EBV positive", "EBV positive (EBER ISH)"])),
    ("fra", status("folate receptor alpha positive", &["folate receptor alpha positive", "folate receptor alpha positive (75% of cells)"])),
    ("ck20", status("CK20 positive", &["CK20 positive", "CK20 positive (perinuclear dot pattern)"])),
    ("mcpyv", status("Merkel cell polyomavirus positive", &["Merkel cell polyomavirus positive", "Merkel cell polyomavirus positive by IHC"])),
    ("cea", serum("CEA", Some("carcinoembryonic antigen"), "ng/mL", 42, 9000, true)),
    ("ca19-9", serum("CA 19-9", Some("carbohydrate antigen 19-9"), "U/mL", 60, 12000, false)),
    ("ca125", serum("CA-125", Some("cancer antigen 125"), "U/mL", 40, 3200, false)),
    ("ca15-3", serum("CA 15-3", None, "U/mL", 32, 480, false)),
    ("psa", serum("PSA", Some("prostate-specific antigen"), "ng/mL", 12, 2500, true)),
    ("afp", serum("AFP", Some("alpha-fetoprotein"), "ng/mL", 25, 24000, false)),
    ("hcg", serum("beta-hCG", None, "mIU/mL", 8, 48000, false)),
    ("ldh", serum("LDH", Some("lactate dehydrogenase"), "U/L", 230, 1800, false)),
    ("b2m", serum("beta-2 microglobulin", None, "mg/L", 18, 120, true)),
    ("mprotein", serum("M-protein", None, "g/dL", 6, 62, true)),
    ("flc", serum("kappa free light chain", None, "mg/L", 40, 2400, false)),
    ("cga", serum("chromogranin A", None, "ng/mL", 120, 2600, false)),
    ("calcitonin", serum("calcitonin", None, "pg/mL", 90, 9000, false)),
    ("tg", serum("thyroglobulin", None, "ng/mL", 5, 900, false)),
    ("scc", serum("SCC antigen", None, "ng/mL", 22, 180, true)),
    ("nse", serum("NSE", Some("neuron-specific enolase"), "ng/mL", 20, 240, false)),
    ("pivka", serum("PIVKA-II", None, "mAU/mL", 60, 4200, false)),
];

pub(crate) fn marker_by_key(key: &str) -> Option<&'static MarkerDef> {
    MARKERS.iter().find(|(k, _)| *k == key).map(|(_, def)| def)
}

/// Draws a value for a marker and one way of stating it.
pub(crate) fn draw_marker(rng: &mut ChaCha8Rng, def: &MarkerDef) -> MarkerValue {
    match def {
        MarkerDef::Status { answer, phrasings } => MarkerValue {
            answer: (*answer).to_string(),
            phrase: (*one(rng, phrasings)).to_string(),
            serum: false,
        },
        MarkerDef::Valued {
            answer,
            values,
            phrasings,
        } => {
            let value = one(rng, values);
            MarkerValue {
                answer: answer.replace("{v}", value),
                phrase: one(rng, phrasings).replace("{v}", value),
                serum: false,
            }
        }
        MarkerDef::Serum {
            name,
            long,
            unit,
            low,
            high,
            tenths,
        } => {
            let raw = rng.random_range(*low..=*high);
            let value = if *tenths {
                format!("{}.{}", raw / 10, raw % 10)
            } else {
                raw.to_string()
            };
            let answer = format!("{name} {value} {unit}");
            let phrase = match (rng.random_range(0..4), long) {
                (0, _) => format!("{name} of {value} {unit}"),
                (1, Some(long)) => format!("{long} ({name}) {value} {unit}"),
                (2, _) => format!("{name} {value} {unit} at diagnosis"),
                _ => answer.clone(),
            };
            MarkerValue {
                answer,
                phrase,
                serum: true,
            }
        }
    }
}
