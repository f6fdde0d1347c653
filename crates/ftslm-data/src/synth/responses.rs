//! Response categories and how an assessment reports each: which ones fit a
//! treatment context (pathology after neoadjuvant therapy, marrow after
//! induction, PET for lymphoma), and the sentences that state them.

/// The kind of assessment a response comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Imaging,
    Pathology,
    Surveillance,
    Marrow,
    Pet,
    Molecular,
    Labs,
}

/// A response category and how an assessment reports it; every finding
/// contains every word of the answer.
pub(crate) struct ResponseDef {
    pub answer: &'static str,
    pub frame: Frame,
    pub findings: &'static [&'static str],
}

const fn response(
    answer: &'static str,
    frame: Frame,
    findings: &'static [&'static str],
) -> ResponseDef {
    ResponseDef {
        answer,
        frame,
        findings,
    }
}

pub(crate) static PR: ResponseDef = response(
    "partial response",
    Frame::Imaging,
    &[
        "showed a partial response",
        "demonstrated a partial response per RECIST 1.1",
        "showed shrinkage of target lesions consistent with a partial response",
        "was consistent with a partial response (PR)",
    ],
);
pub(crate) static SD: ResponseDef = response(
    "stable disease",
    Frame::Imaging,
    &[
        "showed stable disease",
        "demonstrated stable disease by RECIST 1.1",
        "showed no significant change in target lesions, consistent with stable disease",
    ],
);
pub(crate) static PD: ResponseDef = response(
    "progressive disease",
    Frame::Imaging,
    &[
        "showed progressive disease",
        "demonstrated new lesions consistent with progressive disease",
        "showed growth of target lesions, consistent with progressive disease",
    ],
);
pub(crate) static CR: ResponseDef = response(
    "complete response",
    Frame::Imaging,
    &[
        "showed a complete response",
        "demonstrated resolution of all target lesions, a complete response",
        "was consistent with a complete response (CR)",
    ],
);
pub(crate) static MIXED: ResponseDef = response(
    "mixed response",
    Frame::Imaging,
    &[
        "showed a mixed response",
        "showed shrinkage of some lesions and growth of others, a mixed response",
    ],
);
pub(crate) static NED: ResponseDef = response(
    "no evidence of disease",
    Frame::Surveillance,
    &[
        "shows no evidence of disease",
        "demonstrates no evidence of disease",
        "shows no evidence of disease recurrence",
    ],
);
pub(crate) static PCR: ResponseDef = response(
    "pathologic complete response",
    Frame::Pathology,
    &[
        "showed a pathologic complete response (ypT0N0)",
        "revealed no residual invasive carcinoma, a pathologic complete response",
        "confirmed a pathologic complete response",
    ],
);
pub(crate) static PATH_PR: ResponseDef = response(
    "partial response",
    Frame::Pathology,
    &[
        "showed residual tumor with treatment effect, a partial response",
        "demonstrated a partial response with residual viable tumor",
    ],
);
pub(crate) static WATCHED: ResponseDef = response(
    "stable disease",
    Frame::Surveillance,
    &[
        "shows stable disease",
        "has shown stable disease without progression",
        "shows stable disease",
    ],
);
pub(crate) static CMR: ResponseDef = response(
    "complete metabolic response",
    Frame::Pet,
    &[
        "showed a complete metabolic response (Deauville 2)",
        "demonstrated a complete metabolic response",
        "was consistent with a complete metabolic response (Deauville 3)",
    ],
);
pub(crate) static PMR: ResponseDef = response(
    "partial metabolic response",
    Frame::Pet,
    &[
        "showed a partial metabolic response (Deauville 4)",
        "demonstrated a partial metabolic response",
    ],
);
pub(crate) static PET_PD: ResponseDef = response(
    "progressive disease",
    Frame::Pet,
    &[
        "showed progressive disease with new FDG-avid nodes",
        "demonstrated progressive disease",
    ],
);
pub(crate) static REMISSION: ResponseDef = response(
    "complete remission",
    Frame::Marrow,
    &[
        "showed complete remission",
        "confirmed complete remission with recovery of counts",
        "was consistent with complete remission",
    ],
);
pub(crate) static CRI: ResponseDef = response(
    "complete remission with incomplete hematologic recovery",
    Frame::Marrow,
    &[
        "showed complete remission with incomplete hematologic recovery",
        "was consistent with complete remission with incomplete hematologic recovery (CRi)",
    ],
);
pub(crate) static REFRACTORY: ResponseDef = response(
    "refractory disease",
    Frame::Marrow,
    &[
        "showed persistent leukemia, consistent with refractory disease",
        "showed refractory disease",
    ],
);
pub(crate) static MLFS: ResponseDef = response(
    "morphologic leukemia-free state",
    Frame::Marrow,
    &["showed a morphologic leukemia-free state"],
);
pub(crate) static LAB_PR: ResponseDef = response(
    "partial response",
    Frame::Labs,
    &[
        "showed a partial response",
        "was consistent with a partial response",
    ],
);
pub(crate) static LAB_CR: ResponseDef = response(
    "complete response",
    Frame::Labs,
    &[
        "showed a complete response",
        "was consistent with a complete response",
    ],
);
pub(crate) static LAB_SD: ResponseDef =
    response("stable disease", Frame::Labs, &["showed stable disease"]);
pub(crate) static LAB_PD: ResponseDef = response(
    "progressive disease",
    Frame::Labs,
    &[
        "showed progressive disease",
        "demonstrated rising counts consistent with progressive disease",
    ],
);
pub(crate) static MMR: ResponseDef = response(
    "major molecular response",
    Frame::Molecular,
    &[
        "showed a major molecular response",
        "confirmed a major molecular response (BCR-ABL1 below 0.1%)",
    ],
);
pub(crate) static CCYR: ResponseDef = response(
    "complete cytogenetic response",
    Frame::Molecular,
    &["showed a complete cytogenetic response"],
);
pub(crate) static CHR: ResponseDef = response(
    "complete hematologic response",
    Frame::Labs,
    &["showed a complete hematologic response"],
);
pub(crate) static DMR: ResponseDef = response(
    "deep molecular response",
    Frame::Molecular,
    &[
        "showed a deep molecular response",
        "confirmed a deep molecular response (MR4.5)",
    ],
);
pub(crate) static VGPR: ResponseDef = response(
    "very good partial response",
    Frame::Labs,
    &[
        "showed a very good partial response",
        "was consistent with a very good partial response (VGPR)",
    ],
);
pub(crate) static SCR: ResponseDef = response(
    "stringent complete response",
    Frame::Labs,
    &[
        "showed a stringent complete response",
        "confirmed a stringent complete response with MRD negativity",
    ],
);

pub(crate) type ResponsePool = &'static [(&'static ResponseDef, u32)];

pub(crate) static ADVANCED: ResponsePool = &[(&PR, 9), (&SD, 5), (&PD, 3), (&CR, 2), (&MIXED, 1)];
pub(crate) static CURATIVE: ResponsePool = &[(&NED, 1)];
pub(crate) static AFTER_NEOADJUVANT: ResponsePool = &[(&PCR, 4), (&PATH_PR, 4), (&NED, 2)];
pub(crate) static AFTER_CHEMORADIATION: ResponsePool = &[(&CR, 4), (&PR, 4), (&SD, 1), (&PD, 1)];
pub(crate) static UNDER_SURVEILLANCE: ResponsePool = &[(&WATCHED, 1)];
pub(crate) static BRAIN: ResponsePool = &[(&SD, 5), (&PD, 3), (&PR, 2), (&CR, 1)];
pub(crate) static LYMPHOMA: ResponsePool = &[(&CMR, 5), (&PMR, 2), (&CR, 1), (&PET_PD, 1)];
pub(crate) static ACUTE_LEUKEMIA: ResponsePool =
    &[(&REMISSION, 6), (&CRI, 2), (&REFRACTORY, 1), (&MLFS, 1)];
pub(crate) static CLL: ResponsePool = &[(&LAB_PR, 4), (&LAB_CR, 2), (&LAB_SD, 1), (&LAB_PD, 1)];
pub(crate) static CML: ResponsePool = &[(&MMR, 5), (&CCYR, 2), (&CHR, 2), (&DMR, 1)];
pub(crate) static MYELOMA: ResponsePool = &[
    (&VGPR, 4),
    (&LAB_CR, 2),
    (&SCR, 1),
    (&LAB_PR, 2),
    (&LAB_PD, 1),
];

/// Every response category, for the tests that check phrasings against answers.
#[cfg(test)]
pub(crate) static ALL_RESPONSES: &[&ResponseDef] = &[
    &PR,
    &SD,
    &PD,
    &CR,
    &MIXED,
    &NED,
    &PCR,
    &PATH_PR,
    &WATCHED,
    &CMR,
    &PMR,
    &PET_PD,
    &REMISSION,
    &CRI,
    &REFRACTORY,
    &MLFS,
    &LAB_PR,
    &LAB_CR,
    &LAB_SD,
    &LAB_PD,
    &MMR,
    &CCYR,
    &CHR,
    &DMR,
    &VGPR,
    &SCR,
];
