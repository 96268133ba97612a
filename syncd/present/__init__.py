"""How reports are shown to people, for the CLI (`syncd report …`) and the web console alike.

`tables`: the presentation model (`Column`, `Kind`, `Typed`, `Table`), one output's options
(`Output`: language, unit, masked or full IDs), the cell formatting (`Cells`) and the XLSX
workbook writer (`xlsx_bytes`). `columns`: the column sets of every report and the builders
of their tables, so the console's pages and their Excel exports show the very cells the CLI
shows. Neither reads nor writes anything but what it is given (`columns.city_names` reads the
hub's node list on a connection it is handed).
"""
