// Registers the Rust routines (extendr) and its panic hook when R loads the package.
void R_init_sceffects_extendr(void *dll);
void register_extendr_panic_hook(void);

void R_init_sceffects(void *dll) {
    register_extendr_panic_hook();
    R_init_sceffects_extendr(dll);
}
