//! State snapshots beside the tables when the tables are on S3: under the
//! namespace's location (`s3://bucket/prefix/authpulse.db/state/`), written
//! and read with the tables' own file IO. A PUT is atomic, so a crash leaves
//! the old object or the new one. A run on another host (a replaced
//! container, a new instance) finds its state where it finds its tables.

use std::io::{self, Read, Write};
use std::sync::Arc;

use iceberg::io::FileIO;

use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::snapshot::{SnapshotError, SnapshotFiles};

pub struct ObjectFiles {
    file_io: FileIO,
    /// Without a trailing slash.
    root: String,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl ObjectFiles {
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }
}

fn io_error(e: iceberg::Error) -> io::Error {
    io::Error::other(e)
}

impl SnapshotFiles for ObjectFiles {
    fn put(
        &self,
        name: &str,
        write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
    ) -> io::Result<u64> {
        let mut bytes = Vec::new();
        let size = write(&mut bytes)?;
        let output = self.file_io.new_output(self.path(name)).map_err(io_error)?;
        self.runtime
            .block_on(output.write(bytes.into()))
            .map_err(io_error)?;
        Ok(size)
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.runtime
            .block_on(self.file_io.exists(self.path(name)))
            .map_err(io_error)
    }

    /// An S3 DELETE of a missing key succeeds: no look first.
    fn delete(&self, name: &str) -> io::Result<()> {
        self.runtime
            .block_on(self.file_io.delete(self.path(name)))
            .map_err(io_error)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read>> {
        let input = self.file_io.new_input(self.path(name)).map_err(io_error)?;
        let bytes = self.runtime.block_on(input.read()).map_err(io_error)?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }

    fn location(&self, name: &str) -> String {
        self.path(name)
    }
}

impl Warehouse {
    /// Where state snapshots go beside tables kept off this host (Glue on
    /// S3); `None` for the embedded warehouse, whose snapshots stay under
    /// `--output` with it.
    pub fn remote_state_files(&self) -> Result<Option<ObjectFiles>, LakehouseError> {
        if !self.is_remote() {
            return Ok(None);
        }
        let table = self.load(tables::CURATED)?;
        let location = table.metadata().location().trim_end_matches('/');
        let namespace = location
            .rsplit_once('/')
            .map_or(location, |(parent, _)| parent);
        Ok(Some(ObjectFiles {
            file_io: table.file_io().clone(),
            root: format!("{namespace}/state"),
            runtime: Arc::clone(self.runtime()),
        }))
    }
}
