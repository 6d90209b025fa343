# Sourced by the scripts that need Python: makes sure $root/.venv holds what
# tests/lakehouse/requirements.txt lists (PyIceberg, DuckDB, moto, ...), and
# sets $venv. Expects $root, the repository's root.
venv="$root/.venv"
requirements="$root/tests/lakehouse/requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
    echo "setting up $venv (PyIceberg, DuckDB, moto, cbor2) ..."
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
