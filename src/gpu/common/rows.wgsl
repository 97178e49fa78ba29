// The "rows" schedule of spmm_csr_rows and spmm_nm_rows (imported, `// import
// rows`): R_RPW rows per workgroup, each row's R_CT x R_KS threads (R_CT across
// vec4 columns, R_KS taking every R_KS-th entry of the row), the R_KS partial
// sums reduced through workgroup memory. Reads the importer's `p` (row_tiles:
// row tiles of R_RPW rows; m_rows; n4: vec4 columns of X and Y).

override R_CT: u32 = 1u;                     // threads across vec4 columns
override R_KS: u32 = 32u;                    // threads splitting a row's entries
override R_RPW: u32 = 8u;                    // rows per workgroup
override R_WG: u32 = R_CT * R_KS * R_RPW;

var<workgroup> red: array<vec4<f32>, R_WG>;

// Where invocation `lid` of flat workgroup `flat` works.
struct RowsLane {
    ks: u32,     // its share of the row's entries
    row: u32,    // the row (spmm_csr_rows: its index in row_order)
    c4: u32,     // the vec4 column
    live: bool,  // row and column inside the product
}

fn rows_lane(flat: u32, lid: u32) -> RowsLane {
    let ct = lid % R_CT;
    let ks = (lid / R_CT) % R_KS;
    let row = (flat % p.row_tiles) * R_RPW + lid / (R_CT * R_KS);
    let c4 = (flat / p.row_tiles) * R_CT + ct;
    return RowsLane(ks, row, c4, row < p.m_rows && c4 < p.n4);
}

// The R_KS partial sums of a row, summed in the lane with ks == 0 (the other
// lanes' results are partial). Every invocation of the workgroup calls it.
fn rows_sum(acc: vec4<f32>, lid: u32, ks: u32) -> vec4<f32> {
    var sum = acc;
    if (R_KS > 1u) {
        red[lid] = acc;
        workgroupBarrier();
        if (ks == 0u) {
            for (var t = 1u; t < R_KS; t++) {
                sum += red[lid + t * R_CT];
            }
        }
    }
    return sum;
}
