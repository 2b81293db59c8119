fn main() {
    println!("bothends");
}
