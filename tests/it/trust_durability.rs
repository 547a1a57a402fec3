//! No lost or forged results: stored before acknowledged, interrupted runs, failed writes (issue 12, findings 4, 5 and 7).
