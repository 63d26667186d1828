use linkrt::{format, image};

use super::CmdResult;

pub fn ls() -> CmdResult {
    let mut rows = vec![vec![
        "REPOSITORY".to_string(),
        "TAG".into(),
        "EXPOSE".into(),
        "COMMAND".into(),
    ]];
    for i in image::all() {
        rows.push(vec![
            i.name.clone(),
            "latest".into(),
            i.expose.join(","),
            i.cmd.join(" "),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(0)
}
