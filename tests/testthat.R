library(testthat)
library(sceffects)

test_check("sceffects")
