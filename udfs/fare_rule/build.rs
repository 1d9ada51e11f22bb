fn main() {
    fleetstream_udf_build::generate();
}
