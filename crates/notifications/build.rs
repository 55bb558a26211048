// Generates the gRPC Notificator from proto/notificator.proto (needs protoc: Debian
// protobuf-compiler, which scripts/services.sh installs).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/notificator.proto");
    tonic_prost_build::configure().compile_protos(&["proto/notificator.proto"], &["proto"])?;
    Ok(())
}
